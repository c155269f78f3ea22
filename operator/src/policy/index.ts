// The policy arithmetic: plain objects in, plain objects out, no I/O.
export * from './budget.ts';
export * from './compliance.ts';
export * from './desired.ts';
export * from './diff.ts';
export * from './match.ts';
export * from './podspec.ts';
export * from './types.ts';
