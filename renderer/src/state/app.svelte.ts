// The application shell's state: the backend client, the connection, which
// screen is shown (kept in the URL hash so a reload lands on the same screen,
// a live run included), the theme, and the notices shown to the person.

import type { Client, ConnectionState } from '../../../electron/common/client.ts';
import { describeError } from '../../../electron/common/client.ts';

import type { Route, Screen } from '../lib/route.ts';

export { SCREENS, parseHash, routeHash, type Route, type Screen } from '../lib/route.ts';

export type Theme = 'system' | 'light' | 'dark';

export interface Notice {
  id: number;
  level: 'error' | 'info';
  title: string;
  message: string;
}

const THEME_KEY = 'spillway.theme';

export class AppState {
  connection = $state<ConnectionState>('connecting');
  route = $state<Route>({ screen: 'new', runId: null });
  theme = $state<Theme>('system');
  notices = $state<Notice[]>([]);
  /** In the desktop app (the preload's bridge): native dialogs instead of the backend's file browser. */
  native = $state(false);
  #client: Client | null = null;
  #nextNotice = 1;

  get client(): Client {
    if (!this.#client) throw new Error('the backend client is not connected yet');
    return this.#client;
  }

  connect(client: Client, native = false): void {
    this.#client = client;
    this.native = native;
    this.connection = client.state;
    client.onConnection((s) => (this.connection = s));
  }

  loadPreferences(storage: Pick<Storage, 'getItem'> | null): void {
    const t = storage?.getItem(THEME_KEY);
    if (t === 'light' || t === 'dark' || t === 'system') this.theme = t;
  }

  setTheme(t: Theme, storage: Pick<Storage, 'setItem'> | null): void {
    this.theme = t;
    storage?.setItem(THEME_KEY, t);
  }

  navigate(screen: Screen, runId: string | null = null): void {
    this.route = { screen, runId: screen === 'live' ? (runId ?? this.route.runId) : screen === 'playground' ? runId : null };
  }

  /** What the backend had to say when it opened its data folder (a damaged database moved aside…), shown until dismissed. */
  async loadBackendNotices(): Promise<void> {
    try {
      for (const n of (await this.client.call('getNotices', {})).notices) {
        this.notify(n.level === 'info' ? 'info' : 'error', 'When Spillway opened its data folder', n.message);
      }
    } catch (e) {
      this.fail('Could not read what the backend reported at startup', e);
    }
  }

  /** Shows a failure: what went wrong (title) and the error's own words, with a hint where one is known. */
  fail(title: string, e: unknown): void {
    this.notify('error', title, describeError(e));
  }

  notify(level: Notice['level'], title: string, message: string): void {
    const id = this.#nextNotice++;
    this.notices = [...this.notices.slice(-4), { id, level, title, message }];
    if (level === 'info') setTimeout(() => this.dismiss(id), 5000);
  }

  dismiss(id: number): void {
    this.notices = this.notices.filter((n) => n.id !== id);
  }
}

export const app = new AppState();
