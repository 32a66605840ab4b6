// Types of scripts/configValidator.mjs (imported by scripts/schemas.ts and the tests).
export const SCHEMA: string;
export const OUT: string;
export function generate(): string;
export function writeIfChanged(): string;
