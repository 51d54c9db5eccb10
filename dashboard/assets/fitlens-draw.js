// fitlens: how the dashboard loads plotly.js and draws its figures (dashboard/app.py says why).
//
// Plotly.js starts loading as the first callback request leaves (request_pre, the renderer's documented hook), so
// it is evaluated while the server computes the page. Until it has run, window.Plotly is a promise of it: dcc.Graph
// waits on window.Plotly when it is set, and would otherwise fetch plotly.py's full bundle itself.
//
// Once loaded, each figure is drawn in a task of its own, in the order dcc.Graph asks (the page's): after the
// browser has had a frame to paint (or 50 ms, where no frames come: a tab in the background), and behind other
// waiting work (a background-priority task where the browser has scheduler.postTask). A graph has at most one draw
// waiting, with the latest figure asked for; one whose graph has left the page is not drawn.

function fitlensAfterPaint() {
    return new Promise(function (resolve) {
        var waiting = true;
        var go = function () {
            if (!waiting) { return; }
            waiting = false;
            if (window.scheduler && scheduler.postTask) { scheduler.postTask(resolve, {priority: "background"}); }
            else { setTimeout(resolve, 0); }
        };
        requestAnimationFrame(go);
        setTimeout(go, 50);
    });
}

function fitlensDrawAfterPaint(Plotly) {
    var react = Plotly.react, queue = Promise.resolve();
    Plotly.react = function (gd) {
        var pending = gd.fitlensPending;
        if (pending) {
            pending.args = arguments;
            return pending.drawn;
        }
        pending = gd.fitlensPending = {args: arguments};
        pending.drawn = queue.then(fitlensAfterPaint).then(function () {
            gd.fitlensPending = null;
            return gd.isConnected ? react.apply(Plotly, pending.args) : gd;
        });
        queue = pending.drawn.catch(function () {});
        return pending.drawn;
    };
}

// The hooks of the page's DashRenderer: load the plotly.js bundle at `plotlyUrl` with the first request.
function fitlensRendererHooks(plotlyUrl) {
    return {request_pre: function () {
        if (window.Plotly) { return; }
        window.Plotly = new Promise(function (resolve, reject) {
            var script = document.createElement("script");
            script.src = plotlyUrl;
            script.async = true;
            script.onload = function () { fitlensDrawAfterPaint(window.Plotly); resolve(); };
            script.onerror = reject;
            document.head.appendChild(script);
        });
    }};
}
