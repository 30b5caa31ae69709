"""Does a figure show what it claims? A check for figures shown in a lecture room.

:func:`figure_problems` draws a matplotlib figure (without rendering pixels) and lists what a projected notebook
would get wrong:

- **data outside the axes**: more than half of the finite points of a line, scatter, collection or patch lie
  outside the axes' view limits (they are clipped away: e.g. scores in percent with y limits set for fractions);
- **empty axes**: an axes with its frame on and nothing drawn in it;
- **text too small to read projected**: a title, axis label, tick label, legend entry or annotation whose size,
  after the figure is scaled to the width it is shown at, is below :data:`MIN_FONT_PT`.

The thresholds (module constants; each can be passed to :func:`figure_problems`):

- :data:`DISPLAY_WIDTH_IN` = 10 inches: the widest a figure is shown. JupyterLab shows an inline figure at
  ``figure.dpi`` (100) pixels per inch and shrinks a wider image to its output area, about 1,000 px on a 1280-px
  projector; a figure W inches wide is therefore scaled by min(1, 10 / W).
- :data:`MIN_FONT_PT` = 9 points after that scaling (12.5 px at 100 dpi, a little under the notebook's own
  13-px text): the smallest size we accept on a projector.
- :data:`MAX_OUTSIDE_SHARE` = 0.5: the share of an artist's points that may lie outside the view limits (a zoom
  may cut a curve's ends; a curve mostly outside its axes shows nothing).

:class:`FigureTracker` collects the figures a notebook cell shows (in the kernel), and
:mod:`isvos_lite.viz.nbval_figures` runs the check after every cell while the notebooks run under nbval
(``make test``). Matplotlib's own artist API is used throughout (https://matplotlib.org/stable/api/artist_api.html).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.collections import Collection, PathCollection
from matplotlib.figure import Figure, SubFigure
from matplotlib.image import AxesImage
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text

__all__ = ["DISPLAY_WIDTH_IN", "MIN_FONT_PT", "MAX_OUTSIDE_SHARE", "figure_problems", "assert_figure_ok",
           "FigureTracker"]

DISPLAY_WIDTH_IN = 10.0     # the widest a figure is shown (JupyterLab's output area on a 1280-px projector, 100 dpi)
MIN_FONT_PT = 9.0           # smallest text size after scaling the figure to DISPLAY_WIDTH_IN
MAX_OUTSIDE_SHARE = 0.5     # an artist with more of its points outside the view limits shows (mostly) nothing
SKIP_GID = "figure-check:skip"   # an artist with this gid is not checked (e.g. a deliberate off-axes marker)
_TOLERANCE_PX = 1.0         # points this close to the axes' edge count as inside


def figure_problems(figure: Figure, display_width_in: float = DISPLAY_WIDTH_IN, min_font_pt: float = MIN_FONT_PT,
                    max_outside_share: float = MAX_OUTSIDE_SHARE) -> list[str]:
    """What is wrong with ``figure`` when it is shown at most ``display_width_in`` inches wide; [] when nothing.

    The figure is drawn once without rendering (``Figure.draw_without_rendering``), so layout engines and tick
    labels are final; nothing is displayed or saved.
    """
    if not isinstance(figure, Figure):
        raise TypeError(f"figure_problems: expected a matplotlib Figure, got {type(figure).__name__}")
    if display_width_in <= 0 or min_font_pt <= 0 or not 0 <= max_outside_share < 1:
        raise ValueError("figure_problems: display_width_in and min_font_pt must be > 0 and max_outside_share in [0, 1)")
    with _recording_drawn_texts() as drawn:
        figure.draw_without_rendering()
    width_in = float(figure.get_figwidth())
    scale = min(1.0, display_width_in / width_in) if width_in > 0 else 1.0
    problems: list[str] = []
    for ax in _visible_axes(figure):
        problems += _axes_problems(ax, max_outside_share)
    small: dict[tuple[str, float], int] = {}
    roles = _text_roles(figure)
    for text in drawn:
        if text.get_figure(root=True) is not figure:
            continue
        role = roles.get(id(text), "text")
        shown = text.get_fontsize() * scale
        if shown < min_font_pt - 1e-9 and text.get_gid() != SKIP_GID:
            key = (role, round(shown, 1))
            small[key] = small.get(key, 0) + 1
            if small[key] == 1:
                problems.append(
                    f"text too small to read projected: {role} {text.get_text()[:40]!r} is "
                    f"{text.get_fontsize():g} pt in a {width_in:.1f}-inch-wide figure, {shown:.1f} pt when shown "
                    f"{min(width_in, display_width_in):g} inches wide (at least {min_font_pt:g} pt needed: make the "
                    f"figure narrower or the text larger)")
    for (role, shown), count in small.items():
        if count > 1:
            problems.append(f"... and {count - 1} more of that size ({role}, {shown:g} pt)")
    return problems


def assert_figure_ok(figure: Figure, **thresholds) -> None:
    """Raise AssertionError listing :func:`figure_problems` when there are any."""
    problems = figure_problems(figure, **thresholds)
    if problems:
        raise AssertionError(_describe(figure) + ":\n  - " + "\n  - ".join(problems))


def _describe(figure: Figure) -> str:
    title = figure._suptitle.get_text() if getattr(figure, "_suptitle", None) is not None else ""
    if not title:
        titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
        title = titles[0] if titles else ""
    size = "x".join(f"{v:.1f}" for v in figure.get_size_inches())
    return f"figure {title[:60]!r} ({size} in)" if title else f"figure ({size} in)"


@contextmanager
def _recording_drawn_texts() -> Iterator[list[Text]]:
    """Collect every Text that matplotlib actually draws (visible, non-empty: tick labels in view, titles, ...)."""
    drawn: list[Text] = []
    original = Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    Text.draw = draw
    try:
        yield drawn
    finally:
        Text.draw = original


def _text_roles(figure: Figure) -> dict[int, str]:
    """id(Text) -> what it is (tick label, axis label, title, legend entry, figure title) for the figure's texts."""
    roles: dict[int, str] = {}
    for ax in figure.get_axes():
        for axis in ax._axis_map.values():
            for tick in (*axis.majorTicks, *axis.minorTicks):
                roles[id(tick.label1)] = roles[id(tick.label2)] = "tick label"
            roles[id(axis.label)] = "axis label"
            roles[id(axis.offsetText)] = "tick label"
        for title in (ax.title, ax._left_title, ax._right_title):
            roles[id(title)] = "title"
        if ax.get_legend() is not None:
            roles.update({id(text): "legend entry" for text in ax.get_legend().get_texts()})
            if ax.get_legend().get_title().get_text():
                roles[id(ax.get_legend().get_title())] = "legend title"
    for fig in (figure, *figure.subfigs):
        for legend in fig.legends:
            roles.update({id(text): "legend entry" for text in legend.get_texts()})
        for name in ("_suptitle", "_supxlabel", "_supylabel"):
            if getattr(fig, name, None) is not None:
                roles[id(getattr(fig, name))] = "figure title"
    return roles


def _visible_axes(figure: Figure | SubFigure) -> list[Axes]:
    axes = [ax for ax in figure.axes if ax.get_visible()]
    for sub in figure.subfigs:
        axes += _visible_axes(sub)
    return axes


def _content(ax: Axes) -> list[Artist]:
    return [artist for artist in (*ax.lines, *ax.collections, *ax.images, *ax.patches, *ax.texts, *ax.tables,
                                  *ax.artists, *ax.child_axes, ax.get_legend())
            if artist is not None and artist.get_visible()]


def _axes_problems(ax: Axes, max_outside_share: float) -> list[str]:
    name = _axes_name(ax)
    content = _content(ax)
    if not content:
        return [f"empty axes: {name} has its frame on and nothing drawn in it (set_axis_off() an unused panel)"] \
            if ax.axison else []
    box = ax.bbox
    problems = []
    for artist in content:
        if artist.get_gid() == SKIP_GID or isinstance(artist, (Text, Axes, Legend)) or not artist.get_clip_on():
            continue
        points = _display_points(artist)
        if points is None or len(points) == 0:
            continue
        inside = ((points[:, 0] >= box.x0 - _TOLERANCE_PX) & (points[:, 0] <= box.x1 + _TOLERANCE_PX)
                  & (points[:, 1] >= box.y0 - _TOLERANCE_PX) & (points[:, 1] <= box.y1 + _TOLERANCE_PX))
        outside = 1.0 - inside.mean()
        if outside > max_outside_share:
            problems.append(
                f"data outside the axes limits: {outside:.0%} of the {len(points)} points of {_artist_name(artist)} "
                f"in {name} lie outside x {_limits(ax.get_xlim())}, y {_limits(ax.get_ylim())} "
                "(are the data and the limits in the same units?)")
    return problems


def _display_points(artist: Artist) -> np.ndarray | None:
    """(n, 2) finite display coordinates of an artist's data, or None for artists without points (images: extent)."""
    if isinstance(artist, Line2D):
        xy = np.column_stack([np.asarray(artist.get_xdata(orig=False), dtype=float).reshape(-1),
                              np.asarray(artist.get_ydata(orig=False), dtype=float).reshape(-1)]) \
            if np.size(artist.get_xdata()) == np.size(artist.get_ydata()) else np.empty((0, 2))
        transform = artist.get_transform()
    elif isinstance(artist, AxesImage):
        left, right, bottom, top = artist.get_extent()
        xy = np.array([[left, bottom], [right, top], [(left + right) / 2, (bottom + top) / 2]], dtype=float)
        transform = artist.get_transform()
    elif isinstance(artist, PathCollection):                             # scatter: the markers sit at the offsets
        xy, transform = np.asarray(artist.get_offsets(), dtype=float).reshape(-1, 2), artist.get_offset_transform()
    elif isinstance(artist, Collection):                                 # lines, polygons, contours: their vertices
        paths = artist.get_paths()
        xy = np.concatenate([path.vertices for path in paths]) if paths else np.empty((0, 2))
        transform = artist.get_transform()
    elif isinstance(artist, Patch):
        if artist is artist.axes.patch:
            return None
        xy = np.asarray(artist.get_verts(), dtype=float).reshape(-1, 2)        # already in display coordinates
        return xy[np.all(np.isfinite(xy), axis=1)]
    else:
        return None
    xy = np.ma.filled(np.ma.masked_invalid(xy), np.nan) if np.ma.isMaskedArray(xy) else xy
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) == 0:
        return xy
    with np.errstate(all="ignore"):
        points = transform.transform(xy)
    return points[np.all(np.isfinite(points), axis=1)]


def _axes_name(ax: Axes) -> str:
    title = ax.get_title() or ax.get_title("left") or ax.get_ylabel() or ax.get_xlabel()
    figure = getattr(ax.figure, "figure", None) or ax.figure             # a subfigure's axes: the root figure
    index = list(figure.axes).index(ax) if ax in figure.axes else -1
    return f"axes {index}" + (f" ({title[:50]!r})" if title else "")


def _artist_name(artist: Artist) -> str:
    label = artist.get_label()
    kind = type(artist).__name__
    return f"{kind} {label!r}" if label and not label.startswith("_") else kind


def _limits(limits: tuple[float, float]) -> str:
    return f"{limits[0]:.4g}..{limits[1]:.4g}"


class FigureTracker:
    """Remembers every figure shown since the last :meth:`report` (kernel side).

    A figure counts as shown when it is rendered into a buffer (``FigureCanvasBase.print_figure`` with a file-like
    target: how IPython's inline backend displays a figure, whether it is a cell's last expression, a ``display``
    call or a pyplot figure at the end of the cell), or when it lives on an ipympl canvas (an explorer; those are
    tracked through ``Figure.__init__`` and ``Figure.clear``, which an explorer calls on every redraw). A figure
    only saved to a file, or closed before the cell ends, is not shown and not checked. References are kept until
    the next report, so a figure a cell showed and dropped is still checked. One tracker is active per process.
    """

    _active: "FigureTracker | None" = None

    def __init__(self, **thresholds):
        self.thresholds = thresholds
        self.pending: list[Figure] = []         # shown (rendered into a buffer)
        self.touched: list[Figure] = []         # created or cleared: checked if they sit on an ipympl canvas
        self._originals: tuple | None = None

    @classmethod
    def active(cls) -> "FigureTracker | None":
        return cls._active

    def install(self) -> "FigureTracker":
        from matplotlib.backend_bases import FigureCanvasBase

        if FigureTracker._active is not None:
            FigureTracker._active.uninstall()
        init, clear, print_figure = Figure.__init__, Figure.clear, FigureCanvasBase.print_figure
        tracker = self

        def tracked_init(figure, *args, **kwargs):
            init(figure, *args, **kwargs)
            _remember(tracker.touched, figure)

        def tracked_clear(figure, *args, **kwargs):
            result = clear(figure, *args, **kwargs)
            _remember(tracker.touched, figure)
            return result

        def tracked_print_figure(canvas, filename, *args, **kwargs):
            if hasattr(filename, "write"):                    # into a buffer: displayed, not saved to a path
                _remember(tracker.pending, canvas.figure)
            return print_figure(canvas, filename, *args, **kwargs)

        Figure.__init__, Figure.clear, FigureCanvasBase.print_figure = tracked_init, tracked_clear, tracked_print_figure
        self._originals = (init, clear, print_figure)
        FigureTracker._active = self
        return self

    def uninstall(self) -> None:
        from matplotlib.backend_bases import FigureCanvasBase

        if self._originals is not None:
            Figure.__init__, Figure.clear, FigureCanvasBase.print_figure = self._originals
            self._originals = None
        if FigureTracker._active is self:
            FigureTracker._active = None

    def shown(self) -> list[Figure]:
        """The figures shown since the last report (rendered into a buffer, or on an ipympl canvas)."""
        figures = list(self.pending)
        for figure in self.touched:
            if type(figure.canvas).__module__.startswith("ipympl"):
                _remember(figures, figure)
        return figures

    def report(self) -> list[str]:
        """Problems of every figure shown since the last report (one line per problem, naming the figure)."""
        figures = self.shown()
        self.pending, self.touched = [], []
        lines = []
        for figure in figures:
            if not figure.axes:                   # cleared for good, or never drawn into
                continue
            try:
                problems = figure_problems(figure, **self.thresholds)
            except Exception as error:            # a figure that cannot be drawn is itself a problem
                problems = [f"cannot be drawn: {type(error).__name__}: {error}"]
            lines += [f"{_describe(figure)}: {problem}" for problem in problems]
        return lines

    def report_json(self) -> str:
        """:meth:`report` as a JSON list (read back by the nbval plugin from a kernel user expression)."""
        return json.dumps(self.report())


def _remember(figures: list[Figure], figure: Figure) -> None:
    if not any(figure is seen for seen in figures):
        figures.append(figure)


def install_tracker(**thresholds) -> FigureTracker:
    """Start tracking figures in this process (the nbval plugin calls it in each notebook's kernel)."""
    return FigureTracker(**thresholds).install()


def tracked_report_json() -> str:
    """The active tracker's JSON report ("[]" when none is installed)."""
    tracker = FigureTracker.active()
    return tracker.report_json() if tracker is not None else "[]"
