# %% [markdown]
# # Who painted this? siamidx from Python
#
# A notebook in the percent format (`# %%` cells): open it in Jupyter (with
# jupytext), VS Code or Spyder, or run it whole with `/usr/bin/python3
# examples/notebook.py`. It indexes a folder of paintings (one folder per
# artist), asks which artist painted one of them, and compares two paintings.
#
# Where things are (environment variables, with their defaults):
# - `SIAMIDX_EXAMPLE_IMAGES`: the collection, `../shared/data/paintings`
#   (tests/test_python.sh points it at the test fixtures);
# - `SIAMIDX_EXAMPLE_INDEX`: the index to make, `/tmp/siamidx-example.idx`;
# - `SIAMIDX_MODEL`: the model, else the installed default model;
# - `SIAMIDX_EXAMPLE_PER_ARTIST`: images indexed per artist (8), of at most 10 artists.
#
# The package must be importable (installed by `cmake --install`, or
# `PYTHONPATH=python SIAMIDX_LIBRARY=build/libsiamidx.so` in a checkout).

# %%
import os
import sys

import siamidx  # before numpy: it picks OpenBLAS's kernels for this CPU (docs/performance.md)

import numpy as np

images = os.environ.get("SIAMIDX_EXAMPLE_IMAGES", "../shared/data/paintings")
index_path = os.environ.get("SIAMIDX_EXAMPLE_INDEX", "/tmp/siamidx-example.idx")
per_artist = int(os.environ.get("SIAMIDX_EXAMPLE_PER_ARTIST", "8"))
if not os.path.isdir(images):
    sys.exit("no collection at %s (set SIAMIDX_EXAMPLE_IMAGES)" % images)

# %% [markdown]
# ## The model and its embeddings
# An embedding is a float32 vector of unit length; similar paintings have a
# large dot product.

# %%
model = siamidx.Model()
print("model", model.path, "dimension", model.dim)
artists = sorted(d for d in os.listdir(images) if os.path.isdir(os.path.join(images, d)))[:10]
by_artist = {
    a: sorted(os.path.join(images, a, f) for f in os.listdir(os.path.join(images, a)))[:per_artist]
    for a in artists
}
first = [files[0] for files in by_artist.values()]
emb = model.embed(first)
print("embeddings", emb.shape, emb.dtype)
print("cosine similarity of each artist's first painting to the others:")
print(np.round(emb @ emb.T, 3))

# %% [markdown]
# ## An index of the collection
# Each artist's paintings are added under the artist's name (the CLI's
# `siamidx build` does the same for a whole folder or CSV, faster).

# %%
import shutil

shutil.rmtree(index_path, ignore_errors=True)
with siamidx.Index(index_path, model=model, create=True) as idx:
    for artist, files in by_artist.items():
        report = idx.add(files[1:], artist=artist)  # the first painting is kept out
        print("%-30s indexed %d, failed %d" % (artist, report["n_indexed"], report["n_failed"]))

# %% [markdown]
# ## Who painted it?
# A painting the index has not seen: the ranked artists, the share left to
# "an artist not in the index", and the nearest indexed paintings. The answer
# is the dict `siamidx query IMAGE --json` prints (docs/json.md).

# %%
with siamidx.Index(index_path, model=model) as idx:
    query = first[0]
    answer = idx.query(query, k=3, neighbors=3)
    print("query", answer["image"]["path"], "(head: %s)" % answer["head"]["source"])
    for a in answer["artists"]:
        print("  %.3f  %s" % (a["probability"], a["artist"]))
    print("  %.3f  (unknown)" % answer["unknown"])
    for n in answer["neighbors"]:
        print("  similarity %.3f  %-24s %s" % (n["similarity"], n["artist"], n["path"]))

# %% [markdown]
# ## Are two paintings by the same artist?
# Needs a head (the index's, after `siamidx train`, else the model's default one).

# %%
with siamidx.Index(index_path, model=model) as idx:
    try:
        same = idx.pair(first[0], by_artist[artists[0]][1])
        other = idx.pair(first[0], first[-1])
        print("same artist:      P = %.3f (%s)" % (same["probability"], same["same_artist"]))
        print("different artist: P = %.3f (%s)" % (other["probability"], other["same_artist"]))
    except siamidx.Error as e:
        print("no pair answer:", e.message, "status", e.status)
