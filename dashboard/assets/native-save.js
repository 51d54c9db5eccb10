// fitlens: the browser's own trimming and number parsing, saved before Babel's polyfill replaces them with slower
// JavaScript ones (dashboard/app.py says why); native-restore.js puts them back after it. Loaded before the
// polyfill, not as an ordinary asset.
window.fitlensNative = [
    [String.prototype, "trim"], [String.prototype, "trimStart"], [String.prototype, "trimEnd"],
    [String.prototype, "trimLeft"], [String.prototype, "trimRight"],
    [window, "parseInt"], [window, "parseFloat"], [Number, "parseInt"], [Number, "parseFloat"]
].map(function (saved) { return [saved[0], saved[1], saved[0][saved[1]]]; });
