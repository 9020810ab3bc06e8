export * from './concord.js';
