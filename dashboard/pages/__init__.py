"""The dashboard's pages, in the order the router tries them. Each module has PATH, TITLE, controls() and
content(); see `dashboard.app`."""

from dashboard.pages import gradcheck, home, layers, optimization, regularization, run, sweep

PAGES = (home, sweep, run, layers, regularization, optimization, gradcheck)
