"""Helpers shared by the browser tests (serve's page and the exported web page)."""

from __future__ import annotations

import math

STEP = 40  # canvas units: the most a mouse moves between two events while it draws


def draw(pg, strokes, steps: int | None = None) -> None:
    """Draw `strokes` (lists of (x, y) points on the 280x280 canvas) with the mouse on page `pg`.

    Each segment is `steps` mouse moves (by default one per STEP canvas units, at least one): the page
    draws straight lines between the points it is given, so a curve's many short segments need no
    points between (each move is a round trip to the browser)."""
    box = pg.locator("#canvas").bounding_box()
    k = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        pg.mouse.move(box["x"] + x * k, box["y"] + y * k)
        pg.mouse.down()
        for nx, ny in stroke[1:]:
            n = steps or max(1, math.ceil(math.hypot(nx - x, ny - y) / STEP))
            pg.mouse.move(box["x"] + nx * k, box["y"] + ny * k, steps=n)
            x, y = nx, ny
        pg.mouse.up()


def clear_if_drawn(pg) -> bool:
    """Click the page's Clear button if an earlier test drew on it (its canvas version is not 0): a page
    loaded once per module starts each test blank. Whether it clicked (the caller waits for it to settle)."""
    if pg.evaluate("document.getElementById('canvas').dataset.version") == "0":
        return False
    pg.click("#clear")
    return True
