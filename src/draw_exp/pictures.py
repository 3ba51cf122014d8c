"""Pictures of DRAW at work: sample grids, the drawing animation with attention boxes, and KL per step.

Everything returns PIL images (or writes files), so the same code feeds W&B, CSV run folders and sample.py.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from draw_exp.model.attention import AttentionParams

READ_COLOUR = (0, 200, 0)  # the paper's figures: read window green
WRITE_COLOUR = (230, 0, 0)  # write window red


def attention_box(gx: float, gy: float, delta: float, grid_size: int) -> tuple[float, float, float, float]:
    """The filterbank's extent in image coordinates (x0, y0, x1, y1): centre (gx, gy), side N·δ.

    The model's coordinates are 1-based pixel centres; pixel a (1-based) covers [a − 1, a] on the image, so a
    model coordinate g sits at g − ½ there.
    """
    half = grid_size * delta / 2
    return gx - 0.5 - half, gy - 0.5 - half, gx - 0.5 + half, gy - 0.5 + half


def to_pil(image: torch.Tensor, scale: int = 1) -> Image.Image:
    """``[C, H, W]`` in [0, 1] → an RGB PIL image, enlarged ``scale`` times (nearest neighbour)."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    array = array.expand(3, *array.shape[1:]) if array.shape[0] == 1 else array
    picture = Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST) if scale > 1 else picture


def draw_box(picture: Image.Image, box, colour, scale: int) -> None:
    x0, y0, x1, y1 = (v * scale for v in box)
    ImageDraw.Draw(picture).rectangle([x0, y0, x1, y1], outline=colour, width=max(1, scale // 2))


def tile(pictures: list[Image.Image], columns: int, pad: int = 2) -> Image.Image:
    width, height = pictures[0].size
    rows = (len(pictures) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (width + pad) + pad, rows * (height + pad) + pad), (255, 255, 255))
    for i, picture in enumerate(pictures):
        sheet.paste(picture, (pad + (i % columns) * (width + pad), pad + (i // columns) * (height + pad)))
    return sheet


def drawing_frames(
    canvases: torch.Tensor,
    read_params: AttentionParams | None = None,
    write_params: AttentionParams | None = None,
    read_size: int = 0,
    write_size: int = 0,
    scale: int = 3,
    columns: int | None = None,
) -> list[Image.Image]:
    """One frame per step: a grid of the canvases σ(c_t) ``[T, N, C, H, W]``, each with the step's read window
    (green) and write window (red) where their parameters (fields ``[T, N]``) are given."""
    steps, n = canvases.shape[:2]
    columns = columns or max(1, int(n**0.5))
    frames = []
    for t in range(steps):
        pictures = []
        for i in range(n):
            picture = to_pil(canvases[t, i], scale)
            for params, size, colour in (
                (read_params, read_size, READ_COLOUR),
                (write_params, write_size, WRITE_COLOUR),
            ):
                if params is not None:
                    draw_box(
                        picture,
                        attention_box(params.gx[t, i].item(), params.gy[t, i].item(), params.delta[t, i].item(), size),
                        colour,
                        scale,
                    )
            pictures.append(picture)
        frames.append(tile(pictures, columns))
    return frames


def save_gif(frames: list[Image.Image], path: str | Path, frame_ms: int = 80, hold_last_ms: int = 1500) -> Path:
    """An animated GIF with every frame, looping, the finished drawing held a while."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [frame_ms] * (len(frames) - 1) + [hold_last_ms]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, optimize=False)
    return path


def strip(frames: list[Image.Image], every: int) -> Image.Image:
    """Every ``every``-th frame, and the last, side by side."""
    chosen = frames[every - 1 :: every]
    if not chosen or chosen[-1] is not frames[-1]:
        chosen.append(frames[-1])
    return tile(chosen, columns=len(chosen), pad=4)


def grid(images: torch.Tensor, scale: int = 1) -> Image.Image:
    """A square grid of ``[N, C, H, W]`` images in [0, 1]."""
    return to_pil(make_grid(images.detach().float().cpu(), nrow=max(1, int(len(images) ** 0.5)), pad_value=1.0), scale)


def kl_per_step_chart(kl: torch.Tensor) -> Image.Image:
    """A bar chart of the mean KL (nats) at each step, ``kl`` ``[T]``, with labelled axes and the total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = kl.detach().float().cpu()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.bar(range(1, len(values) + 1), values.tolist(), color="#2860c0", width=0.8)
    ax.set_xlabel("step t")
    ax.set_ylabel("KL (nats per image)")
    ax.set_title(f"KL per step: {float(values.sum()):.1f} nats in all", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def fixed_noise(model, samples: int, images: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The z draws for ``samples`` samples and ``images`` reconstructions, ``[T, n, latent_size]`` each, from a
    generator of their own: pictures never move the global random state (a run with pictures trains exactly as
    one without), and the same seed draws the same pictures."""
    generator = torch.Generator().manual_seed(seed)
    shape = (model.T, samples + images, model.latent_size)
    noise = torch.randn(shape, generator=generator).to(device)
    return noise[:, :samples], noise[:, samples:]


@torch.no_grad()
def render_all(
    model,
    images: torch.Tensor,
    noise: torch.Tensor,
    folder: str | Path,
    animated: int = 16,
    strip_every: int = 8,
    scale: int = 3,
    recon_noise: torch.Tensor | None = None,
) -> dict[str, Path]:
    """Write every picture of a model to ``folder``; returns ``{key: path}``.

    ``images`` ``[N, C, H, W]`` are data to reconstruct; ``noise`` ``[T, M, latent_size]`` fixes the samples and
    ``recon_noise`` ``[T, N, latent_size]`` the reconstructions' posterior draws (see :func:`fixed_noise`).
    Keys: ``samples`` and ``reconstructions`` (grids), ``drawing_samples`` and ``drawing_reconstructions`` (GIFs of
    ``animated`` images over the T steps, with write windows on samples and read and write windows on
    reconstructions), their ``*_strip`` PNGs (every ``strip_every``-th step), ``kl_per_step`` (chart) and
    ``kl_per_step_table`` (CSV).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    attention = model.attention
    read_size, write_size = getattr(attention, "read_size", 0), getattr(attention, "write_size", 0)
    files = {}

    canvases, write = model.sample_steps(noise.shape[1], noise)
    files["samples"] = folder / "samples.png"
    grid(canvases[-1]).save(files["samples"])
    frames = drawing_frames(canvases[:, :animated], None, _first(write, animated), write_size=write_size, scale=scale)
    files["drawing_samples"] = save_gif(frames, folder / "drawing_samples.gif")
    files["drawing_samples_strip"] = folder / "drawing_samples_strip.png"
    strip(frames, strip_every).save(files["drawing_samples_strip"])

    if len(images) == 0:  # samples only
        return files
    if recon_noise is None:
        raise ValueError("render_all: reconstructions need recon_noise [T, N, latent_size] (see fixed_noise)")
    out = model(images, noise=recon_noise, return_steps=True)
    recon = torch.sigmoid(out.canvases)  # [T, N, C, H, W]
    files["reconstructions"] = folder / "reconstructions.png"
    grid(torch.stack([images, recon[-1]], dim=1).flatten(0, 1)).save(files["reconstructions"])
    frames = drawing_frames(
        recon[:, :animated],
        _first(out.read_params, animated),
        _first(out.write_params, animated),
        read_size,
        write_size,
        scale,
    )
    files["drawing_reconstructions"] = save_gif(frames, folder / "drawing_reconstructions.gif")
    files["drawing_reconstructions_strip"] = folder / "drawing_reconstructions_strip.png"
    strip(frames, strip_every).save(files["drawing_reconstructions_strip"])

    kl = out.kl.mean(0)  # [T]
    files["kl_per_step"] = folder / "kl_per_step.png"
    kl_per_step_chart(kl).save(files["kl_per_step"])
    files["kl_per_step_table"] = folder / "kl_per_step.csv"  # W&B draws it as a chart of its own (send_pictures)
    files["kl_per_step_table"].write_text(
        "step,kl_nats\n" + "".join(f"{t + 1},{v:.6f}\n" for t, v in enumerate(kl.tolist()))
    )
    return files


def _first(params: AttentionParams | None, n: int) -> AttentionParams | None:
    return None if params is None else AttentionParams(*(field[:, :n] for field in params))


def step_colours(steps: int) -> list[tuple[int, int, int]]:
    """One colour per glimpse, from blue (the first) through green to red (the last)."""
    import colorsys

    return [
        tuple(round(255 * c) for c in colorsys.hsv_to_rgb(0.66 * (1 - t / max(steps - 1, 1)), 1, 1))
        for t in range(steps)
    ]


@torch.no_grad()
def glimpse_trajectories(
    classifier, images: torch.Tensor, labels: torch.Tensor, folder: str | Path, scale: int = 2, columns: int = 8
) -> dict[str, Path]:
    """The paper's Figure 4: each image with its T glimpse windows drawn over it, one colour per step (blue first,
    red last), and the predicted and true class above it. ``images`` ``[N, C, H, W]``, ``labels`` ``[N]``.
    Writes ``glimpses.png`` to ``folder``; returns ``{"glimpses": path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = classifier(images)
    predicted = out.logits.argmax(1).tolist()
    colours = step_colours(classifier.T)
    pictures = []
    for i, image in enumerate(images):
        picture = to_pil(image, scale)
        for t in range(classifier.T):
            box = attention_box(
                out.glimpses.gx[t, i].item(),
                out.glimpses.gy[t, i].item(),
                out.glimpses.delta[t, i].item(),
                classifier.read_size,
            )
            draw_box(picture, box, colours[t], scale)
        ImageDraw.Draw(picture).text((2, 1), f"{predicted[i]} ({int(labels[i])})", fill=(255, 255, 0))
        pictures.append(picture)
    path = folder / "glimpses.png"
    tile(pictures, min(columns, len(pictures))).save(path)
    return {"glimpses": path}
