"""Helpers shared by the browser tests (serve's page and the exported web page)."""

from __future__ import annotations


def draw(pg, strokes, steps: int = 8) -> None:
    """Draw `strokes` (lists of (x, y) points on the 280x280 canvas) with the mouse on page `pg`."""
    box = pg.locator("#canvas").bounding_box()
    k = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        pg.mouse.move(box["x"] + x * k, box["y"] + y * k)
        pg.mouse.down()
        for x, y in stroke[1:]:
            pg.mouse.move(box["x"] + x * k, box["y"] + y * k, steps=steps)
        pg.mouse.up()
