"""siamidx: which artist painted this? Python over libsiamidx (ctypes + numpy).

    import siamidx
    model = siamidx.Model()                  # the default model; or Model("file.safetensors")
    emb = model.embed(["a.jpg", "b.jpg"])    # numpy float32 (2, D), as `siamidx embed`
    with siamidx.Index("paintings.idx") as idx:
        ans = idx.query("a.jpg", k=5)        # a dict: what `siamidx query --json` prints
        p = idx.pair("a.jpg", "b.jpg")       # a dict: what `siamidx pair --json` prints
        idx.add(["c.jpg"], artist="Rembrandt")

Answers are the library's own JSON documents (docs/json.md) parsed into dicts:
the CLI prints the very same text, so the two cannot disagree. Failures raise
siamidx.Error carrying the library's status code and message.

Threads: the library is called through ctypes.CDLL, which releases the GIL for
the duration of every call, so embedding and querying from several Python
threads run in parallel. A Model may embed from any number of threads at once;
an Index may be queried from several threads (writes are serialised by the
index itself).

BLAS kernels: OpenBLAS chooses its kernels once, when it is loaded, and
Debian 12's OpenBLAS takes recent AVX-512 Xeons for SSE3 "Prescott"s (GEMMs
about 4x slower). So when OPENBLAS_CORETYPE is unset and OpenBLAS is not yet
loaded, importing siamidx sets it to what the CPU supports (SkylakeX with
AVX-512, Haswell with AVX2+FMA) before loading numpy and libsiamidx; the
process's environment keeps it. When numpy or torch had already loaded
OpenBLAS with weaker kernels it is too late, and siamidx warns
(RuntimeWarning): import siamidx first, or set OPENBLAS_CORETYPE yourself.
blas_core() says which kernels run. A value you set is never changed.

The library is found through $SIAMIDX_LIBRARY (a path to libsiamidx.so), else
where `cmake --install` put it beside this package, else a build tree next to
the source (build/libsiamidx.so), else the system's loader path.
"""
import ctypes
import json
import os
import warnings


def _openblas_loaded():
    try:
        with open("/proc/self/maps") as f:
            return any("openblas" in line for line in f)
    except OSError:
        return False


def _cpu_blas_core():
    """What the CPU lets OpenBLAS run: the rule of siamidx_blas_core_get (blas_core.c)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= set(flags):
        return "SkylakeX"
    if {"avx2", "fma"} <= set(flags):
        return "Haswell"
    return None


# Before numpy, which loads OpenBLAS (see "BLAS kernels" above).
_USER_CORETYPE = "OPENBLAS_CORETYPE" in os.environ
if not _USER_CORETYPE and not _openblas_loaded() and _cpu_blas_core():
    os.environ["OPENBLAS_CORETYPE"] = _cpu_blas_core()

import numpy as np  # noqa: E402

__all__ = ["Model", "Index", "Error", "blas_core"]

_MESSAGE_MAX = 512  # SIAMIDX_ERROR_MESSAGE_MAX
_IMAGE_FAILED = 5   # SIAMIDX_ERR_IMAGE: some images of a batch could not be read


class _Error(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int), ("message", ctypes.c_char * _MESSAGE_MAX)]


class _QueryOptions(ctypes.Structure):  # siamidx_query_options
    _fields_ = [("k", ctypes.c_int), ("neighbors", ctypes.c_int), ("candidates", ctypes.c_int)]


class Error(Exception):
    """A failure reported by libsiamidx: .status (the siamidx_status code), .reason
    (its short description) and .message (the library's one-line message)."""

    def __init__(self, status, message, reason=""):
        super().__init__("%s (status %d: %s)" % (message, status, reason) if reason else message)
        self.status, self.message, self.reason = status, message, reason


def _candidates():
    env = os.environ.get("SIAMIDX_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    try:  # written by `cmake --install` (python/siamidx/_install.py.in)
        from . import _install
        yield os.path.normpath(os.path.join(here, _install.LIBDIR_FROM_PACKAGE, _install.SONAME))
    except ImportError:
        pass
    yield os.path.join(here, "..", "..", "build", "libsiamidx.so")  # the source tree's build
    yield "libsiamidx.so.0"


def _load():
    tried = []
    for path in _candidates():
        if os.path.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("siamidx: libsiamidx not found (set SIAMIDX_LIBRARY); tried " + ", ".join(tried))


_lib = _load()
_P = ctypes.c_void_p
_S = ctypes.c_char_p
_E = ctypes.POINTER(_Error)


def _declare(name, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype, f.argtypes = restype, list(argtypes)
    return f


class _BlasCore(ctypes.Structure):  # siamidx_blas_core
    _fields_ = [("core", ctypes.c_char_p), ("config", ctypes.c_char_p),
                ("cpu_core", ctypes.c_char_p), ("weaker", ctypes.c_int), ("dynamic", ctypes.c_int)]


_blas_core_get = _declare("siamidx_blas_core_get", None, ctypes.POINTER(_BlasCore))


def blas_core():
    """The kernels OpenBLAS runs in this process: a dict with core (e.g. "SkylakeX"),
    cpu_core (the best the CPU supports, or None), weaker (bool), dynamic (bool:
    OPENBLAS_CORETYPE is honoured) and config (OpenBLAS's build description)."""
    b = _BlasCore()
    _blas_core_get(ctypes.byref(b))
    text = lambda v: v.decode("utf-8", "replace") if v is not None else None  # noqa: E731
    return {"core": text(b.core), "cpu_core": text(b.cpu_core), "weaker": bool(b.weaker),
            "dynamic": bool(b.dynamic), "config": text(b.config)}


def _warn_if_blas_too_late():
    b = blas_core()
    if b["weaker"] and b["dynamic"] and not _USER_CORETYPE:
        warnings.warn("siamidx: OpenBLAS was loaded before siamidx (by numpy or torch?) and runs "
                      "its %s kernels, though this CPU supports %s (GEMMs several times faster): "
                      "import siamidx first, or set OPENBLAS_CORETYPE=%s before starting Python"
                      % (b["core"], b["cpu_core"], b["cpu_core"]), RuntimeWarning, stacklevel=2)


_warn_if_blas_too_late()
_strerror = _declare("siamidx_strerror", _S, ctypes.c_int)
_model_load = _declare("siamidx_model_load", ctypes.c_int, _S, ctypes.POINTER(_P), _E)
_model_free = _declare("siamidx_model_free", None, _P)
_model_dim = _declare("siamidx_model_dim", ctypes.c_size_t, _P, ctypes.c_int)
_model_fingerprint = _declare("siamidx_model_fingerprint", _S, _P)
_model_path = _declare("siamidx_model_path", _S, _P)
_default_model_path = _declare("siamidx_default_model_path", _S)
_embed_files = _declare("siamidx_embed_files", ctypes.c_int, _P, ctypes.POINTER(_S), ctypes.c_size_t,
                        _P, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_int),
                        ctypes.POINTER(_Error), _E)
_index_open = _declare("siamidx_index_open", ctypes.c_int, _S, _P, _P, ctypes.POINTER(_P), _E)
_index_close = _declare("siamidx_index_close", None, _P)
_query_options_init = _declare("siamidx_query_options_init", None, ctypes.POINTER(_QueryOptions))
_query_json = _declare("siamidx_index_query_json", ctypes.c_int, _P, _P, _S,
                       ctypes.POINTER(_QueryOptions), ctypes.POINTER(_P), _E)
_pair_json = _declare("siamidx_index_pair_json", ctypes.c_int, _P, _P, _S, _S, ctypes.POINTER(_P), _E)
_add_json = _declare("siamidx_index_add_json", ctypes.c_int, _P, _P, ctypes.POINTER(_S),
                     ctypes.c_size_t, _S, ctypes.POINTER(_P), _E)
_json_free = _declare("siamidx_json_free", None, _P)


class _IndexOptions(ctypes.Structure):  # siamidx_index_options
    _fields_ = [("read_only", ctypes.c_int), ("create", ctypes.c_int), ("wait", ctypes.c_int),
                ("index_type", ctypes.c_char_p)]


def _raise(status, err):
    reason = (_strerror(status) or b"").decode("utf-8", "replace")
    raise Error(status, err.message.decode("utf-8", "replace"), reason)


def _path(p):
    """A path as the library takes it: bytes, non-UTF-8 names kept (os.fsencode)."""
    return os.fsencode(os.fspath(p))


def _document(status, doc, err, ok=(0,)):
    """The library's JSON document as a dict (freed here); raises Error unless status is in ok."""
    try:
        text = ctypes.string_at(doc.value) if doc.value else None
    finally:
        if doc.value:
            _json_free(doc)
    if status not in ok or text is None:
        _raise(status, err)
    return json.loads(text.decode("utf-8"))


class _Closing:
    """A handle freed by close(), at the end of a with block, or when collected."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Model(_Closing):
    """A model file (safetensors): Model() is the default model ($SIAMIDX_MODEL, else the
    installed one), Model(path) another. Immutable once loaded: embed from any thread."""

    def __init__(self, path=None):
        if path is None:
            path = os.environ.get("SIAMIDX_MODEL") or _default_model_path().decode()
        self._handle = _P()
        err = _Error()
        st = _model_load(_path(path), ctypes.byref(self._handle), ctypes.byref(err))
        if st:
            self._handle = None
            _raise(st, err)
        self.dim = _model_dim(self._handle, 0)

    @property
    def path(self):
        return os.fsdecode(_model_path(self._ptr()))

    @property
    def fingerprint(self):
        return _model_fingerprint(self._ptr()).decode()

    def _ptr(self):
        if not self._handle:
            raise ValueError("siamidx.Model is closed")
        return self._handle

    def embed(self, paths):
        """L2-normalised embeddings of image files: numpy float32 (len(paths), dim), the
        same numbers `siamidx embed` writes. Raises Error (naming the first file that
        failed, with .failures: [(path, status, message)]) when any image cannot be read."""
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        n = len(paths)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        c_paths = (_S * n)(*[_path(p) for p in paths])
        status = (ctypes.c_int * n)()
        errors = (_Error * n)()
        err = _Error()
        st = _embed_files(self._ptr(), c_paths, n, None,
                          out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), status, errors,
                          ctypes.byref(err))
        if st == _IMAGE_FAILED:
            failures = [(paths[i], status[i], errors[i].message.decode("utf-8", "replace"))
                        for i in range(n) if status[i]]
            e = Error(failures[0][1],
                      "%d of %d images could not be embedded: %s" % (len(failures), n, failures[0][2]),
                      (_strerror(failures[0][1]) or b"").decode())
            e.failures = failures
            raise e
        if st:
            _raise(st, err)
        return out

    def close(self):
        if getattr(self, "_handle", None):
            _model_free(self._handle)
            self._handle = None


class Index(_Closing):
    """An index directory, opened to read (queries from any thread). model: the Model its
    embeddings come from (default: Model()), loaded when first needed. add() takes the
    index's writer lock for the call (another writing process: Error, status
    SIAMIDX_ERR_INDEX_LOCKED). create=True makes the index when the directory has none."""

    def __init__(self, path, model=None, create=False):
        self.path = os.fspath(path)
        self._model, self._own_model, self._handle = model, False, None
        if create and not os.path.exists(os.path.join(self.path, "data.mdb")):
            _index_close(self._open(read_only=False, create=True, model=self.model))
        self._handle = self._open(read_only=True, create=False, model=self._model)

    def _open(self, read_only, create, model):
        """A handle on the index (close it with _index_close)."""
        o = _IndexOptions(read_only=int(read_only), create=int(create), wait=0, index_type=None)
        handle, err = _P(), _Error()
        st = _index_open(_path(self.path), model._ptr() if model else None, ctypes.byref(o),
                         ctypes.byref(handle), ctypes.byref(err))
        if st:
            _raise(st, err)
        return handle

    @property
    def model(self):
        if self._model is None:
            self._model, self._own_model = Model(), True
        return self._model

    def _ptr(self):
        if not self._handle:
            raise ValueError("siamidx.Index is closed")
        return self._handle

    def query(self, image, k=5, neighbors=None, candidates=None):
        """Which indexed artists most likely painted `image`: the dict `siamidx query --json`
        prints (k artists, `neighbors` nearest paintings, `candidates` scored as evidence;
        None: the library's defaults, as the CLI's: 5 and 50)."""
        o = _QueryOptions()
        _query_options_init(ctypes.byref(o))
        o.k = k
        if neighbors is not None:
            o.neighbors = neighbors
        if candidates is not None:
            o.candidates = candidates
        doc, err = _P(), _Error()
        st = _query_json(self._ptr(), self.model._ptr(), _path(image), ctypes.byref(o),
                         ctypes.byref(doc), ctypes.byref(err))
        return _document(st, doc, err)

    def pair(self, a, b):
        """P(same artist) for two image files, by the index's head (else the model's):
        the dict `siamidx pair A B -i INDEX --json` prints."""
        doc, err = _P(), _Error()
        st = _pair_json(self._ptr(), self.model._ptr(), _path(a), _path(b), ctypes.byref(doc),
                        ctypes.byref(err))
        return _document(st, doc, err)

    def add(self, paths, artist):
        """Indexes image files as paintings by `artist`: the dict `siamidx add --json` prints
        (images that could not be read are in its "failures", not raised)."""
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        paths = [_path(p) for p in paths]
        writer = self._open(read_only=False, create=False, model=self.model)
        try:
            doc, err = _P(), _Error()
            st = _add_json(writer, self.model._ptr(), (_S * len(paths))(*paths), len(paths),
                           artist.encode("utf-8"), ctypes.byref(doc), ctypes.byref(err))
            return _document(st, doc, err, ok=(0, _IMAGE_FAILED))
        finally:
            _index_close(writer)

    def close(self):
        if getattr(self, "_handle", None):
            _index_close(self._handle)
            self._handle = None
        if getattr(self, "_own_model", False) and self._model is not None:
            self._model.close()
            self._model = None
