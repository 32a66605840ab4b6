// Preloaded (`node -r`) by gcTuning.test.ts as the control: the process runs as it is, except that
// io/gcTuning.ts's call to v8.setFlagsFromString does nothing (the bundle looks the function up when
// it calls it), so V8's defaults stay.
require('node:v8').setFlagsFromString = () => {};
