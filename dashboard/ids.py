"""Component ids, one constant each: layouts and callbacks name them from here, tests too."""

URL = "url"
PAGE = "page"  # the routed page's content
REFRESH = "refresh"  # the live-refresh interval
LIVE = "live"  # the switch that turns live refresh on and off

# sweeps page
RUNS_TABLE = "runs-table"
BIAS_VARIANCE_SCATTER = "bias-variance-scatter"
PARALLEL = "parallel-coordinates"

# run page
CURVES = "curves"

# layers page
KIND = "kind"
STEP = "step"
HISTOGRAMS = "histograms"
DEPTH_PROFILE = "depth-profile"
STAT = "stat"
CONTENT = "content"  # the routed page's data-driven part (figures, tables), rebuilt live
DRAWN_WITH = "drawn-with"  # what the content on the page was drawn with, and its digest (app.drawn_record)
