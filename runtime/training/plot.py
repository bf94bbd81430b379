"""The loss curve as a PNG people can look at.

Drawn with Pillow's ImageDraw, which the runtime already has: matplotlib would add tens of
megabytes (and fonttools, kiwisolver, contourpy...) to every inference worker for one line chart.
The raw loss is drawn faint and a moving average bold, with the axes' ranges written on them.
"""

from __future__ import annotations

from collections.abc import Sequence

WIDTH, HEIGHT = 800, 400
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 30, 40


def moving_average(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


def loss_plot_png(steps: Sequence[int], losses: Sequence[float], title: str) -> bytes:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN_LEFT, MARGIN_TOP, WIDTH - MARGIN_RIGHT, HEIGHT - MARGIN_BOTTOM
    draw.rectangle((left, top, right, bottom), outline="black")
    draw.text((left, 8), title, fill="black")
    if losses:
        low, high = min(losses), max(losses)
        span = (high - low) or 1.0
        first, last = steps[0], steps[-1]
        width = (last - first) or 1

        def point(step: int, value: float) -> tuple[float, float]:
            return (left + (step - first) / width * (right - left), bottom - (value - low) / span * (bottom - top))

        raw = [point(s, v) for s, v in zip(steps, losses, strict=True)]
        smooth = [point(s, v) for s, v in zip(steps, moving_average(losses, max(1, len(losses) // 20)), strict=True)]
        if len(raw) > 1:
            draw.line(raw, fill=(170, 190, 230), width=1)
            draw.line(smooth, fill=(20, 60, 160), width=3)
        else:
            draw.ellipse((raw[0][0] - 3, raw[0][1] - 3, raw[0][0] + 3, raw[0][1] + 3), fill=(20, 60, 160))
        draw.text((4, top), f"{high:.4g}", fill="black")
        draw.text((4, bottom - 10), f"{low:.4g}", fill="black")
        draw.text((left, bottom + 6), f"step {first}", fill="black")
        draw.text((right - 80, bottom + 6), f"step {last}", fill="black")
        draw.text((left + (right - left) // 2 - 40, bottom + 6), "loss (MSE)", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def loss_csv(steps: Sequence[int], losses: Sequence[float]) -> bytes:
    lines = ["step,loss"] + [f"{s},{v!r}" for s, v in zip(steps, losses, strict=True)]
    return ("\n".join(lines) + "\n").encode()
