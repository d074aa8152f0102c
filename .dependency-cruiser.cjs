// One-way dependencies (docs/ARCHITECTURE.md): each folder may import only the folders listed for it, all of them
// upstream of it in the data flow. A module that reaches back up (or sideways into a peer) fails `npm test` (stage
// `deps`). Tests, scripts and the web client are not layered: they may use any part.
//
// Data flows: scanner files → bridge | replay → protocol → ingest (server) → streams/ → inference → pipeline → sinks;
// app wires them for serve and demo; cli and bench sit on top.
/** Folder → folders (or single files, ending .ts) it may import, besides itself and packages / node: built-ins. */
const allowed = {
  'src/core': [],
  'src/scanner': ['src/core'],
  'src/protocol': ['src/core', 'src/scanner'],
  'src/metrics': ['src/core'],
  'src/bids': ['src/core', 'src/scanner', 'src/protocol'],
  'src/sender': ['src/core', 'src/protocol'],
  'src/bridge': ['src/core', 'src/scanner', 'src/protocol', 'src/bids', 'src/sender'],
  'src/replay': ['src/core', 'src/scanner', 'src/protocol', 'src/bids', 'src/sender'],
  'src/server': ['src/core', 'src/scanner', 'src/protocol'],
  streams: ['src/core'],
  // Decoding scores candidate captions with the caption metric (src/metrics is a leaf like src/core).
  'src/inference': ['src/core', 'src/metrics'],
  'src/pipeline': [
    'src/core',
    'src/scanner',
    'src/protocol',
    'src/bids',
    'src/server',
    'streams',
    'src/inference',
    'src/metrics',
  ],
  // Sinks subscribe to the pipeline's outputs (dashboard hosting, state and feed; live metrics; --record derivatives).
  // Of src/server only its HTTP request guard, shared by ingest's and the dashboard's endpoints.
  'src/sinks': [
    'src/core',
    'src/scanner',
    'src/protocol',
    'src/server/requestGuard.ts',
    'streams',
    'src/inference',
    'src/metrics',
    'src/pipeline',
  ],
  // Composition (serve, demo): builds ingest + pipeline + sinks; the only place that knows all of them.
  'src/app': [
    'src/core',
    'src/scanner',
    'src/protocol',
    'src/bids',
    'src/sender',
    'src/replay',
    'src/server',
    'streams',
    'src/inference',
    'src/metrics',
    'src/pipeline',
    'src/sinks',
  ],
  'src/cli': [
    'src/core',
    'src/scanner',
    'src/protocol',
    'src/bids',
    'src/sender',
    'src/bridge',
    'src/replay',
    'src/server',
    'streams',
    'src/inference',
    'src/metrics',
    'src/pipeline',
    'src/sinks',
    'src/app',
  ],
};
// The bench drives what the CLI drives, and the CLI itself.
allowed['src/bench'] = [...allowed['src/cli'], 'src/cli'];

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const layered = Object.keys(allowed);

module.exports = {
  forbidden: [
    ...layered.map((from) => ({
      name: `layer-${from.replace(/^src\//, '')}`,
      comment: `${from} may import only ${allowed[from].join(', ') || 'nothing else in the project'} (docs/ARCHITECTURE.md)`,
      severity: 'error',
      from: { path: `^${esc(from)}/` },
      to: {
        path: '^(src|streams)/',
        pathNot: `^(${[from, ...allowed[from]].map((p) => (p.endsWith('.ts') ? `${esc(p)}$` : `${esc(p)}/`)).join('|')})`,
      },
    })),
    {
      name: 'unlayered-folder',
      comment:
        'every folder under src/ has a place in the layers above: add a new one there (and to docs/ARCHITECTURE.md)',
      severity: 'error',
      from: { path: '^src/', pathNot: `^(${layered.map(esc).join('|')})/` },
      to: {},
    },
    {
      name: 'no-circular',
      comment: 'import cycles hide which side owns what',
      severity: 'error',
      from: { path: '^(src|streams)/' },
      to: { circular: true },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'an import that resolves to nothing',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules|test|models|data)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts'],
    },
  },
};
