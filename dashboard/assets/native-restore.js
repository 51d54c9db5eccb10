// fitlens: the browser's own functions that native-save.js saved before Babel's polyfill, put back after it
// (assets load after the polyfill).
(window.fitlensNative || []).forEach(function (saved) { saved[0][saved[1]] = saved[2]; });
