// Screens and their URL hashes: a reload lands on the same screen (and the same live run).

export type Screen = 'models' | 'datasets' | 'new' | 'live' | 'runs' | 'settings';
export const SCREENS: { id: Screen; label: string }[] = [
  { id: 'models', label: 'Models' },
  { id: 'datasets', label: 'Datasets' },
  { id: 'new', label: 'New run' },
  { id: 'live', label: 'Live run' },
  { id: 'runs', label: 'Runs' },
  { id: 'settings', label: 'Settings' },
];

export interface Route {
  screen: Screen;
  /** The run shown by the live screen. */
  runId: string | null;
}

export function parseHash(hash: string): Route {
  const [screen, ...rest] = hash.replace(/^#\/?/, '').split('/');
  const known = SCREENS.some((s) => s.id === screen);
  return { screen: known ? (screen as Screen) : 'new', runId: screen === 'live' && rest[0] ? decodeURIComponent(rest[0]) : null };
}

export function routeHash(r: Route): string {
  return r.screen === 'live' && r.runId ? `#/live/${encodeURIComponent(r.runId)}` : `#/${r.screen}`;
}
