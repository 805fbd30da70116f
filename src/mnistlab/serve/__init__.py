"""`mnistlab serve`: a draw-a-digit page and a JSON API on a trained run (the optional `serve` extra).

`app.create_app(checkpoint)` builds a Starlette app; `mnistlab serve RUN` (in `mnistlab.cli.serve`)
runs it under uvicorn. Predictions go through `mnistlab.evaluation.predict.Predictor` and the one
MNIST-style preparation and blank rule in `mnistlab.data.images`, so the page, the API and
`mnistlab predict` agree on every image. The page (`page.html`) is one self-contained document that
uses the same API; `web.export_web` (`mnistlab export RUN --format web`) writes the same page as a
static folder that prepares the drawing in JavaScript and predicts with onnxruntime-web (`web_vendor/`).

Endpoints: `GET /` (the page), `POST /api/predict` (an image body, JSON `{"image": base64}`,
JSON `{"pixels": [...]}`, or a batch: a JSON list of those or a multipart form of image files),
`GET /api/model` (the model card) and `GET /healthz`. Every bad request is a 4xx with
`{"error": "..."}`; nothing in a request names a file to read.

Importing this package imports nothing from Starlette; `mnistlab.serve.app` does.
"""
