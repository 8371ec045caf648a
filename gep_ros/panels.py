"""Replay panels: a few windows drawn as PNG files (events, frame, prediction, truth, error)."""

import numpy as np

from .outputs import resize_depth
from .wire.image import decode_image, image_to_rgb


class PanelTap:
    """Wraps the pipeline's representation to keep the events of chosen windows.

    Called on the inference thread in window order; `windows` maps each chosen window's end
    stamp to (index, events, t0, t1, (height, width)).
    """

    def __init__(self, representation, chosen):
        self.representation = representation
        self.chosen = set(chosen)
        self.count = 0
        self.first_end = None  # end stamp of the first window
        self.windows = {}

    def render_fitted(self, events, t0, t1, height, width, size):
        """Keep the window where it is a chosen one, then render it (the pipeline's call)."""
        if self.first_end is None:
            self.first_end = int(t1)
        if self.count in self.chosen:
            # A copy: the window may be a view that keeps its whole buffer segment alive.
            self.windows[int(t1)] = (self.count, np.array(events), t0, t1, (height, width))
        self.count += 1
        return self.representation.render_fitted(events, t0, t1, height, width, size)


def render_panel(path, title, events_rgb, frame, prediction, truth, palette):
    """Write one window's panel as a PNG: inputs, prediction, ground truth, depth error."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    depth, labels = prediction.get('depth'), prediction.get('labels')
    gt_depth, gt_labels = truth.get('depth'), truth.get('labels')
    tiles = [('events (polarity_rgb)', events_rgb, None), ('frame', frame, None)]
    finite = [a[np.isfinite(a)] for a in (depth, gt_depth) if a is not None]
    finite = np.concatenate(finite) if finite else np.empty(0)
    vmin, vmax = np.percentile(finite, (1, 99)) if finite.size else (0.0, 1.0)
    if depth is not None:
        tiles.append(('predicted depth (m)', depth, ('turbo_r', vmin, vmax)))
    if labels is not None:
        tiles.append(('predicted labels', palette[np.minimum(labels, len(palette) - 1)], None))
    if gt_depth is not None:
        tiles.append(('ground-truth depth (m)', gt_depth, ('turbo_r', vmin, vmax)))
    if gt_labels is not None:
        shown = palette[np.minimum(gt_labels, len(palette) - 1)]
        shown[gt_labels == 255] = 255
        tiles.append(('ground-truth labels', shown, None))
    if gt_depth is not None and depth is not None:
        error = np.abs(resize_depth(depth, gt_depth.shape) - gt_depth)
        top = np.nanpercentile(error, 99) if np.isfinite(error).any() else 1.0
        tiles.append(('|depth error| (m)', error, ('inferno', 0.0, top)))
    tiles = [t for t in tiles if t[1] is not None]
    cols = 4 if len(tiles) > 4 else len(tiles)
    rows = -(-len(tiles) // cols)
    fig = Figure(figsize=(4 * cols, 3.2 * rows + 0.4))
    FigureCanvasAgg(fig)
    for i, (name, image, scale) in enumerate(tiles):
        ax = fig.add_subplot(rows, cols, i + 1)
        if scale is None:
            ax.imshow(image)
        else:
            shown = ax.imshow(image, cmap=scale[0], vmin=scale[1], vmax=scale[2])
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(name, fontsize=9)
        ax.axis('off')
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def panel_windows(reader, topics, values, count):
    """Return indices of `count` evenly spaced windows of the expected number."""
    if count <= 0:
        return []
    mode = values['window.mode']
    if (mode == 'auto' and topics.image) or mode == 'image':
        expected = reader.topics[topics.image].count if topics.image else 0
    else:
        expected = int(reader.duration_ns / 1e9 * values['window.rate_hz'])
    expected = max(expected, 1)
    return sorted({int((i + 0.5) * expected / count) for i in range(count)})


def _shrink(rgb, side=480):
    """Downsample an event image by block minimum, so that sparse ink stays visible."""
    f = -(-max(rgb.shape[:2]) // side)
    if f <= 1:
        return rgb
    h, w = rgb.shape[0] // f * f, rgb.shape[1] // f * f
    return rgb[:h, :w].reshape(h // f, f, w // f, f, 3).min(axis=(1, 3))


def write_panels(report_path, panels, palette, first_end=0):
    """Render the collected panels beside the report; return their paths."""
    from gep_model.events import make_representation
    polarity = make_representation('polarity_rgb')
    paths = []
    for stamp, (index, events, t0, t1, sensor), frame_data, prediction, truth in panels:
        events_rgb = _shrink(polarity(events, t0, t1, *sensor).permute(1, 2, 0).numpy())
        frame = image_to_rgb(decode_image(frame_data)) if frame_data is not None else None
        path = report_path.with_name(f'{report_path.stem}_window_{index:05d}.png')
        title = f'window {index}, ending {(stamp - first_end) / 1e9:.3f} s after the first ' \
                f'(stamp {stamp}): {(t1 - t0) / 1e6:.1f} ms, {len(events)} events'
        path.parent.mkdir(parents=True, exist_ok=True)
        render_panel(path, title, events_rgb, frame, prediction, truth, palette)
        paths.append(str(path))
    return paths
