export { ScannerBridge, type BridgeOptions } from './bridge.js';
export { FolderWatcher, type WatchedVolume, type WatchOptions } from './watch.js';
export { EventsTail } from './eventsTail.js';
