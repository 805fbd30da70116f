"""The notebook session README's "Python API" section shows (run: python docs/api_session.py)."""
# ruff: noqa: E402  (cells, as a notebook would run them)
import numpy as np

from mnistlab import Classifier
from mnistlab.data.raw import load_raw

raw = load_raw("mnist")  # the embedded MNIST as uint8 arrays
x_train, y_train, x_test, y_test = raw.train_x, raw.train_y, raw.test_x, raw.test_y
print(x_train.shape, x_train.dtype, y_train[:10])

clf = Classifier("fastcnn", seed=0).fit(x_train, y_train)  # the default recipe, on all 60,000 images
print(f"test accuracy {clf.score(x_test, y_test):.4f}")
print(clf.predict(x_test[:10]), y_test[:10])
print(np.round(clf.predict_proba(x_test[:1]), 3))

clf.save("/tmp/fastcnn.safetensors")
again = Classifier.load("/tmp/fastcnn.safetensors")
print("same predictions after reload:", bool((again.predict(x_test) == clf.predict(x_test)).all()))

names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
small = Classifier("softmax", epochs=5, lr=0.1, seed=0).fit(x_train[:6000].reshape(-1, 784), names[y_train[:6000]])
print(small.predict(x_test[:3].reshape(-1, 784)), small.classes_[:3])

from sklearn.base import clone
from sklearn.model_selection import cross_val_score

print(clone(small).get_params())
print(cross_val_score(Classifier("softmax", epochs=5, lr=0.1, seed=0), x_train[:6000], y_train[:6000], cv=3))
