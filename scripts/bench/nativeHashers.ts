/** Left out of benchmark bundles: loaded at run time from the repo's node_modules (children get NODE_PATH). */
export const NATIVE_HASHERS = ['@node-rs/*'];
