export * from './messages.js';
export * from './validate.js';
export * from './frame.js';
export * from './inlineImage.js';
