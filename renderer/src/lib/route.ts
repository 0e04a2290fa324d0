// Screens and their URL hashes: a reload lands on the same screen (and the same live run, or the
// run the Playground has open).

export type Screen = 'models' | 'datasets' | 'new' | 'live' | 'runs' | 'playground' | 'settings';
export const SCREENS: { id: Screen; label: string }[] = [
  { id: 'models', label: 'Models' },
  { id: 'datasets', label: 'Datasets' },
  { id: 'new', label: 'New run' },
  { id: 'live', label: 'Live run' },
  { id: 'runs', label: 'Runs' },
  { id: 'playground', label: 'Playground' },
  { id: 'settings', label: 'Settings' },
];

export interface Route {
  screen: Screen;
  /** The run shown by the live screen, or whose weights the Playground has open. */
  runId: string | null;
}

/** Screens whose route names a run. */
const WITH_RUN: Screen[] = ['live', 'playground'];

export function parseHash(hash: string): Route {
  const [screen, ...rest] = hash.replace(/^#\/?/, '').split('/');
  const known = SCREENS.some((s) => s.id === screen);
  return { screen: known ? (screen as Screen) : 'new', runId: WITH_RUN.includes(screen as Screen) && rest[0] ? decodeURIComponent(rest[0]) : null };
}

export function routeHash(r: Route): string {
  return WITH_RUN.includes(r.screen) && r.runId ? `#/${r.screen}/${encodeURIComponent(r.runId)}` : `#/${r.screen}`;
}
