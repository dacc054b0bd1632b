#!/usr/bin/python3
"""make_fixtures.py - expected torchvision outputs for tests/test_parity.c, and tiny models.

Full ResNet-18/50 weights are too large to commit, so the weights come from the
portable generator (tools/resnet_fixture.py, mirrored in tests/fixture_model.h):
the C test regenerates the very same model file at test time. Committed, in
tests/data/model/:

  {arch}_{h}x{w}_pooled.f32   torchvision avgpool output, [4, C] float32 LE
  {arch}_{h}x{w}_logits.f32   fc output, [4, 1000] float32 LE
  fixtures.json               seeds, shapes, and the sha256 of each generated
                              model file (the C writer must reproduce it exactly)
  resnet18_e2e_{image}.f32    torchvision's eval transform (PIL decode, Resize 256,
                              CenterCrop 224, Normalize) of tests/data/images/{image},
                              then avgpool [512] followed by fc logits [1000]
  tiny_resnet18.safetensors   width 1/16, fp16, 10 classes (for CLI tests)
  tiny_resnet50.safetensors

Inputs are image j of batch = generator tensor "input.{h}x{w}.{j}", so a batch
of 1 is the first row of the batch of 4. Run: /usr/bin/python3 tools/make_fixtures.py
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import convert_torchvision as cv  # noqa: E402
import resnet_fixture as rf  # noqa: E402

SIZES = [(224, 224), (160, 288)]
BATCH = 4
ARCHS = ["resnet18", "resnet50"]
TINY = {"width": 4, "num_classes": 10, "seed": 16, "dtype": "F16"}


def fixture_model(arch, seed=rf.FIXTURE_SEED):
    tensors = rf.generate(rf.state_dict_shapes(arch), seed)
    meta = cv.build_metadata(arch, tensors, source=f"fixture seed={seed}")
    return tensors, meta


def torchvision_outputs(arch, tensors, h, w):
    model = getattr(torchvision.models, arch)(weights=None)
    state = {n: torch.from_numpy(a.copy()) for n, a in tensors}
    for name in model.state_dict():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros((), dtype=torch.long)
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.from_numpy(rf.make_input(BATCH, h, w, rf.FIXTURE_SEED))
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        pooled = torch.flatten(trunk(x), 1)
        logits = model.fc(pooled)
        assert torch.allclose(logits, model(x), rtol=1e-5, atol=1e-5)
    return pooled.numpy().astype("<f4"), logits.numpy().astype("<f4")


E2E_IMAGES = ["photo_480x360.jpg", "gray_90x70.jpg", "grad_300x180.png"]


def e2e_outputs(out_dir):
    """End to end from image files: what torchvision's eval transform gives."""
    from PIL import Image
    import torchvision.transforms as T
    tensors, meta = fixture_model("resnet18")
    model = torchvision.models.resnet18(weights=None)
    state = {n: torch.from_numpy(a.copy()) for n, a in tensors}
    state.update({n: torch.zeros((), dtype=torch.long)
                  for n in model.state_dict() if n.endswith("num_batches_tracked")})
    model.load_state_dict(state, strict=True)
    model.eval()
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                           T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    images = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "images")
    for name in E2E_IMAGES:
        x = transform(Image.open(os.path.join(images, name)).convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            pooled = torch.flatten(trunk(x), 1)
            logits = model.fc(pooled)
        both = torch.cat([pooled, logits], 1).numpy().astype("<f4")
        both.tofile(os.path.join(out_dir, f"resnet18_e2e_{name}.f32"))
        print(f"e2e {name}: {both.shape}")


def main():
    p = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    p.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "model"))
    p.add_argument("--e2e-only", action="store_true",
                   help="only write the end-to-end (image file) expectations")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(2)
    e2e_outputs(args.out)
    if args.e2e_only:
        return
    info = {"seed": rf.FIXTURE_SEED, "batch": BATCH, "sizes": SIZES, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHS:
            tensors, meta = fixture_model(arch)
            path = os.path.join(tmp, arch + ".safetensors")
            cv.write_safetensors(path, tensors, meta, "F32")
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            entry = {"sha256": digest, "metadata": meta, "outputs": {}}
            for h, w in SIZES:
                pooled, logits = torchvision_outputs(arch, tensors, h, w)
                for kind, arr in (("pooled", pooled), ("logits", logits)):
                    name = f"{arch}_{h}x{w}_{kind}.f32"
                    arr.tofile(os.path.join(args.out, name))
                    entry["outputs"][name] = {"shape": list(arr.shape),
                                              "max_abs": float(np.abs(arr).max())}
            info["models"][arch] = entry
            print(f"{arch}: model sha256 {digest}")
    for arch in ARCHS:
        shapes = rf.state_dict_shapes(arch, TINY["width"], TINY["num_classes"])
        tensors = rf.generate(shapes, TINY["seed"])
        meta = cv.build_metadata(arch, tensors,
                                 source=f"random seed={TINY['seed']} width={TINY['width']}")
        path = os.path.join(args.out, f"tiny_{arch}.safetensors")
        cv.write_safetensors(path, tensors, meta, TINY["dtype"])
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    info["tiny"] = TINY
    with open(os.path.join(args.out, "fixtures.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
