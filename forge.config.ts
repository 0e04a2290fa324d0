// Electron Forge configuration (Linux: deb + AppImage-equivalent zip). Forge
// 7 cannot be installed on these machines and Forge 8 needs Node >= 22.13,
// so its types (@electron-forge/shared-types ForgeConfig) are not available:
// the shape below is a local subset of ForgeConfig, checked by tsc. Packaging
// with Forge happens on a networked machine with Node 22; electron-builder.yml
// is the primary packaging path (AppImage and deb).

interface ForgeMaker {
  name: string;
  platforms?: string[];
  config?: Record<string, unknown>;
}

interface ForgeConfig {
  packagerConfig: {
    name?: string;
    executableName?: string;
    appBundleId?: string;
    icon?: string;
    /** asar, with native binaries unpacked (they cannot be dlopen()ed from inside an archive). */
    asar?: boolean | { unpack?: string; unpackDir?: string };
    ignore?: (string | RegExp)[];
    prune?: boolean;
  };
  rebuildConfig?: { onlyModules?: string[]; force?: boolean };
  makers: ForgeMaker[];
  plugins?: { name: string; config?: Record<string, unknown> }[];
}

const config: ForgeConfig = {
  packagerConfig: {
    name: 'Spillway',
    executableName: 'spillway',
    appBundleId: 'dev.spillway.app',
    asar: { unpack: '{**/native/build/Release/*.node,**/node_modules/better-sqlite3/build/Release/*.node}' },
    prune: true,
    ignore: [/^\/(tests|bench|docs|scripts|native\/(src|include|build\/(?!Release)))/, /\.ts$/, /\.map$/],
  },
  // The engine addon is Node-API (one binary for Node and Electron); only better-sqlite3 needs rebuilding for Electron.
  rebuildConfig: { onlyModules: ['better-sqlite3'], force: true },
  makers: [
    {
      name: '@electron-forge/maker-deb',
      platforms: ['linux'],
      config: { options: { name: 'spillway', productName: 'Spillway', categories: ['Development', 'Science'], section: 'devel' } },
    },
    { name: '@electron-forge/maker-zip', platforms: ['linux'] },
  ],
  plugins: [{ name: '@electron-forge/plugin-auto-unpack-natives', config: {} }],
};

export default config;
