#!/usr/bin/python3
"""convert_torchvision.py - write a torchvision ResNet as a siamidx model file.

  convert_torchvision.py --arch resnet50 --checkpoint finetuned.pth -o model.safetensors
  convert_torchvision.py --arch resnet18 --weights imagenet -o r18.safetensors --dtype f16
  convert_torchvision.py --arch resnet18 --random-seed 7 --width 4 --num-classes 10 -o tiny.safetensors
  convert_torchvision.py --arch resnet18 --npy-dir DIR --stages 3 -o dev.safetensors   (development)

The output is a safetensors file: 8-byte little-endian header length, a JSON
header ("__metadata__" with sorted keys, then the tensors in torchvision
state_dict order), padded with spaces so the data starts 8-byte aligned, then
the raw little-endian tensor data. libsiamidx's sx_safetensors_write produces
byte-identical files for the same input. BatchNorm tensors are kept: the
loader folds them. --random-seed uses the portable generator of
tools/resnet_fixture.py (also implemented in tests/fixture_model.h).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import resnet_fixture as rf  # noqa: E402

DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}


class ConvertError(Exception):
    pass


# ---- writing --------------------------------------------------------------------

def encode(arr, dtype):
    """Little-endian bytes of a float32 array stored as F32, F16 or BF16 (round to nearest even)."""
    a = np.ascontiguousarray(arr, dtype="<f4")
    if dtype == "F32":
        return a.tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    bits = a.view("<u4").astype(np.uint64)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    out = np.where(nan, (bits >> 16) | 0x40, rounded).astype("<u2")
    return out.tobytes()


def safetensors_bytes(tensors, metadata, dtype="F32"):
    """The whole file for [(name, array)] and a {key: str} metadata map."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    for name, arr in tensors:
        raw = encode(arr, dtype)
        header[name] = {"dtype": dtype, "shape": [int(d) for d in np.shape(arr)],
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def write_safetensors(path, tensors, metadata, dtype="F32"):
    """Writes atomically: temporary file, fsync, rename."""
    data = safetensors_bytes(tensors, metadata, dtype)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- metadata -------------------------------------------------------------------

def stage_channels(tensors, arch, stages):
    """Output channels of layer1..layerN, read from the tensors themselves."""
    bottleneck, blocks = rf.ARCHS[arch]
    shapes = dict((n, np.shape(a)) for n, a in tensors)
    last = "conv3" if bottleneck else "conv2"
    return [shapes[f"layer{s}.{blocks[s - 1] - 1}.{last}.weight"][0] for s in range(1, stages + 1)]


def build_metadata(arch, tensors, stages=4, input_size=224, resize=256,
                   resize_policy="shorter_center_crop", mean="0.485,0.456,0.406",
                   std="0.229,0.224,0.225", pooling="avg", gem_p=None, style_stages=None,
                   source=None):
    channels = stage_channels(tensors, arch, stages)
    if pooling == "style":
        chosen = [int(s) for s in (style_stages or str(stages)).split(",")]
        dim = sum(2 * channels[s - 1] for s in chosen)
    else:
        dim = channels[-1]
    meta = {"format": "siamidx", "format_version": "1", "arch": arch, "stages": str(stages),
            "input_size": str(input_size), "resize": str(resize), "resize_policy": resize_policy,
            "mean": mean, "std": std, "pooling": pooling, "embedding_dim": str(dim)}
    if gem_p is not None:
        meta["gem_p"] = str(gem_p)
    if style_stages is not None:
        meta["style_stages"] = style_stages
    names = dict(tensors)
    if "fc.weight" in names:
        meta["num_classes"] = str(np.shape(names["fc.weight"])[0])
    if source:
        meta["source"] = source
    return meta


# ---- sources --------------------------------------------------------------------

def check_layout(arch, state, folded, stages, keep_fc):
    """Orders `state` as torchvision does; refuses naming the first mismatching tensor."""
    if "conv1.weight" not in state:
        raise ConvertError("missing tensor 'conv1.weight'")
    width = int(np.shape(state["conv1.weight"])[0])
    has_fc = "fc.weight" in state
    classes = int(np.shape(state["fc.weight"])[0]) if has_fc else 0
    expected = rf.state_dict_shapes(arch, width, classes, 4, has_fc, folded)
    for name, shape in expected:
        if name not in state:
            raise ConvertError(f"missing tensor '{name}' (expected shape {list(shape)}) for {arch}")
        if tuple(np.shape(state[name])) != tuple(shape):
            raise ConvertError(f"tensor '{name}' has shape {list(np.shape(state[name]))}, "
                               f"expected {list(shape)} for {arch}")
    known = {n for n, _ in expected}
    for name in state:
        if name not in known and not name.endswith("num_batches_tracked"):
            raise ConvertError(f"unexpected tensor '{name}' for {arch}")
    kept = rf.state_dict_shapes(arch, width, classes, stages, has_fc and keep_fc, folded)
    return [(n, np.asarray(state[n], dtype=np.float32)) for n, _ in kept]


def to_numpy(state):
    out = {}
    for k, v in state.items():
        out[k] = v.detach().cpu().float().numpy() if hasattr(v, "detach") else np.asarray(v)
    return out


def load_checkpoint(path):
    import torch
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # torch without weights_only
            obj = torch.load(path, map_location="cpu")
    except Exception as e:
        raise ConvertError(f"{path}: cannot read checkpoint: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ConvertError(f"{path}: not a state_dict (found {type(obj).__name__})")
    if obj and all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return to_numpy(obj)


def load_imagenet(arch):
    import torchvision
    try:
        model = getattr(torchvision.models, arch)(weights="IMAGENET1K_V1")
    except Exception as e:  # typically offline: the download failed
        raise ConvertError(f"cannot get torchvision's {arch} ImageNet weights: {e}") from e
    return to_numpy(model.state_dict())


def load_npy_dir(directory, arch, stages):
    """A BatchNorm-folded .npy-per-tensor folder (development only); keeps layer1..N."""
    state = {}
    for fname in sorted(os.listdir(directory)):
        if fname.endswith(".npy"):
            state[fname[:-4]] = np.load(os.path.join(directory, fname))
    if "conv1.weight" not in state:
        raise ConvertError(f"{directory}: missing tensor 'conv1.weight'")
    width = int(state["conv1.weight"].shape[0])
    tensors = []
    for name, shape in rf.state_dict_shapes(arch, width, 0, stages, False, folded=True):
        if name not in state:
            raise ConvertError(f"{directory}: missing tensor '{name}' (expected shape {list(shape)})")
        if state[name].shape != tuple(shape):
            raise ConvertError(f"{directory}: tensor '{name}' has shape {list(state[name].shape)}, "
                               f"expected {list(shape)}")
        tensors.append((name, state[name].astype(np.float32)))
    return tensors


# ---- command line ---------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=sorted(rf.ARCHS))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="state_dict .pth (or a dict wrapping 'state_dict'/'model')")
    src.add_argument("--weights", choices=["imagenet"], help="torchvision's pretrained weights")
    src.add_argument("--random-seed", type=int, help="portable deterministic random weights")
    src.add_argument("--npy-dir", help="BatchNorm-folded .npy folder (development only)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    p.add_argument("--stages", type=int, choices=[1, 2, 3, 4], default=4)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--resize", type=int, default=256, help="shorter side before the center crop")
    p.add_argument("--resize-policy", choices=["shorter_center_crop", "squash"],
                   default="shorter_center_crop")
    p.add_argument("--mean", default="0.485,0.456,0.406")
    p.add_argument("--std", default="0.229,0.224,0.225")
    p.add_argument("--pooling", choices=["avg", "max", "gem", "style"], default="avg")
    p.add_argument("--gem-p", type=float)
    p.add_argument("--style-stages", help="e.g. 3,4 (style pooling)")
    p.add_argument("--no-fc", action="store_true", help="leave the classifier out")
    p.add_argument("--width", type=int, default=64,
                   help="stem channels for --random-seed (64: torchvision; 4: 1/16 width)")
    p.add_argument("--num-classes", type=int, default=1000, help="fc rows for --random-seed")
    args = p.parse_args(argv)
    if args.npy_dir is None and args.random_seed is None and (args.width != 64):
        p.error("--width applies to --random-seed only")
    return args


def convert(args):
    """Returns [(name, array)] and metadata for parsed arguments."""
    if args.random_seed is not None:
        shapes = rf.state_dict_shapes(args.arch, args.width, args.num_classes, args.stages,
                                      not args.no_fc)
        tensors = rf.generate(shapes, args.random_seed)
        source = f"random seed={args.random_seed} width={args.width}"
    elif args.npy_dir is not None:
        tensors = load_npy_dir(args.npy_dir, args.arch, args.stages)
        source = "npy-dir " + os.path.basename(os.path.normpath(args.npy_dir))
    else:
        if args.checkpoint:
            state, source = load_checkpoint(args.checkpoint), "checkpoint " + os.path.basename(
                args.checkpoint)
        else:
            state, source = load_imagenet(args.arch), "torchvision IMAGENET1K_V1"
        folded = "bn1.weight" not in state and "conv1.bias" in state
        tensors = check_layout(args.arch, state, folded, args.stages, not args.no_fc)
    meta = build_metadata(args.arch, tensors, args.stages, args.input_size, args.resize,
                          args.resize_policy, args.mean, args.std, args.pooling,
                          args.gem_p, args.style_stages, source)
    return tensors, meta


def main(argv=None):
    args = parse_args(argv)
    try:
        tensors, meta = convert(args)
    except ConvertError as e:
        sys.exit(f"convert_torchvision: {e}")
    write_safetensors(args.output, tensors, meta, DTYPES[args.dtype])
    n = sum(int(np.prod(np.shape(a))) for _, a in tensors)
    print(f"wrote {args.output}: {args.arch}, {len(tensors)} tensors, {n} values, "
          f"{DTYPES[args.dtype]}, embedding_dim {meta['embedding_dim']}")


if __name__ == "__main__":
    main()
