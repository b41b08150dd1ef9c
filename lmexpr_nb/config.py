"""One options object for the whole kit, and the profiles that fill it.

`Config` holds five sections: data (preprocessing, paper Sec. IV-A), model (Sec. III-A,
Tables 1-3, ablation switches of Table 7), loss (Sec. III-B, Eq. 4-7), train (Sec. IV-B)
and eval (Sec. IV-C). Defaults are the paper's settings; where the paper is silent the
default is PATN's (Zhu et al., CVPR 2019) and the field's comment says so.

A profile is a small YAML file in `lmexpr_nb/profiles/` (`smoke`, `paper`) or any path:
  config:     overrides of the sections above,
  synth:      options of the synthetic default dataset,
  notebooks:  parameters given to every notebook (and per-notebook ones under their names).
`load_profile(name, overrides)` layers it over the defaults; unknown keys are an error,
not silently ignored, and so is a value of the wrong type (`SettingError`, one line naming the
setting, e.g. "config.train.steps must be an integer, got 'ten'"). Numbers written as text
are read as numbers ("1e-4": PyYAML reads `lr: 1e-4` without a dot as a string); a float
field takes an integer; an integer field takes a whole float (1.0e5); a switch must be a
true boolean (yes/no/true/false), never a string that happens to be truthy. Numbers must also
lie where the kit can honour them (LIMITS, and check_config's rules between settings: e.g.
train.lr a positive float32, model.ngf >= 1, num_landmarks 68): `SettingRangeError`, one line.
This is the one place settings are checked: preprocessing and training call check_settings /
check_config for configs built in code.
A profile file that is not valid YAML is a ValueError naming the file and the line.
Relative weight-file paths inside a profile file (loss.vgg_weights, eval.*_weights) are
resolved against the profile file's own folder, so the same profile works from any working
directory (notebooks run with their own).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass
class DataConfig:
    image_size: int = 128            # [paper] crops rescaled to 128x128
    crop_margin: float = 0.25        # crop box = landmark box grown by this fraction per side, made square
    first_k: int = 3                 # [paper] first three frames of a sequence -> neutral
    last_k: int = 3                  # [paper] last three (peak) frames -> the sequence's label
    val_fraction: float = 0.10       # [paper] 10% of subjects to validation
    split_seed: int = 0
    detector_upsample: int = 0       # dlib HOG upsampling; 1 costs 4x and finds false faces
    oulu_camera: str = "VL"          # [paper] VIS camera ...
    oulu_illumination: str = "Strong"  # [paper] ... strong illumination


@dataclass
class ModelConfig:
    image_size: int = 128
    num_landmarks: int = 68
    num_classes: int = 8             # kit label space, data.records.CLASSES
    ngf: int = 64                    # [PATN] E_ini: 64 -> 128 -> 256 channels
    n_downsampling: int = 2          # [PATN] 128 -> 32
    n_blocks: int = 9                # [PATN define_G] migration unit blocks
    dropout: float = 0.5             # [PATN]
    ndf: int = 64                    # [paper Table 3] 64, 128, 256, 512
    heatmap_sigma: float = 3.0       # [PATN: 6 at 256 px] Gaussian std in pixels at image_size
    landmark_stream_sees_source: bool = True   # [PATN] source||target heatmaps (136 ch); False: target only (68)
    use_feature_init: bool = True    # Table 7 ablation: False = fixed, non-learned downsampling
    use_label_planes: bool = True    # Table 7 ablation "expression label smooth"
    label_range: str = "pm1"         # [paper] one-hot rescaled to [-1, 1]; "01" keeps {0, 1}
    d_bn_before_sigmoid: bool = True  # [paper Table 3] BN5 before the sigmoid; real+fake go through D in one batch
    init_gain: float = 0.02          # [paper] N(0, 0.02)
    output: str = "decoder"          # [paper Table 2] the decoder's Tanh image; "blend" [non-paper, GANimation
                                     # (Pumarola et al., ECCV 2018)]: its last conv gives a 4th channel, an
                                     # attention A, and the image is A * source + (1 - A) * colour (nets.Generator)


@dataclass
class LossConfig:
    lambda_gan: float = 5.0          # [paper] lambda_1
    lambda_perceptual: float = 10.0  # [paper] lambda_2
    lambda_pixel: float = 10.0       # [paper] lambda_3
    vgg_layer: str = "conv1_2"       # [paper] torchvision features[:3]; "relu1_2" = PATN's features[:4]
    vgg_weights: str | None = None   # path to vgg19-dcbb9e9d.pth; None = torchvision's cache
    vgg_standin: bool = False        # True: seeded random-init VGG19, labelled as a stand-in everywhere
    gan_objective: str = "bce"       # [paper Eq. 4] binary cross-entropy; "lsgan" [non-paper, Mao et al.
                                     # ICCV 2017]: least squares on D's pre-sigmoid output (losses.gan_loss)


@dataclass
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 16             # [paper]
    lr: float = 2e-4                 # [paper]
    d_lr: float | None = None        # the discriminators' learning rate; None = train.lr [paper: one lr for all]
    beta1: float = 0.5               # [PATN]
    beta2: float = 0.999             # [PATN]
    lr_decay_start: float = 0.5      # [PATN] constant lr, then linear decay to 0 from this fraction of steps
    pairs: str = "all-ordered-pairs"  # [PATN] training pair list; "neutral-to-expression": the Fig. 9 task only
    gan_start: float = 0.0           # fraction of steps trained without the GAN term (and without D updates):
                                     # an L1/perceptual warm-up, Sec. III-B's "converge at the beginning"; 0 = paper
    seed: int = 0
    checkpoint_every: int = 1000
    sample_every: int = 1000
    log_every: int = 10
    device: str = "auto"             # auto | cpu | cuda
    amp: str = "auto"                # auto (bf16 on CUDA, fp32 on CPU) | bf16-native (bf16 where the
                                     # hardware has it, CPUs with AVX512-BF16/AMX too) | bf16 | fp32
    channels_last: str | bool = "auto"   # auto (on CUDA) | true | false
    compile: bool = False            # torch.compile; never on CPU tests
    num_workers: int = 2
    deterministic: bool = False      # CPU: bitwise repeatable (resume tests)


@dataclass
class EvalConfig:
    fid_features: str = "inception"  # inception (standard FID) | dlib-standin (reported as FD-dlib, never FID)
    inception_weights: str | None = None
    recognisers: tuple[str, ...] = ("dlib",)   # dlib | lightcnn | vggface
    lightcnn_weights: str | None = None
    vggface_weights: str | None = None
    max_pairs: int = 0               # 0 = all validation pairs
    kid_subset_size: int = 100
    kid_subsets: int = 100


@dataclass
class Config:
    profile: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Config":
        return check_config(_update(cls(), d or {}))

    def updated(self, overrides: dict | None) -> "Config":
        return check_config(_update(copy.deepcopy(self), overrides or {}))

    def recipe_differences(self) -> list[str]:
        """Every recipe setting (model, loss, train) where this config differs from the paper
        profile's, as "section.key=value (paper: value)"; bookkeeping settings (logging, devices,
        workers, seeds) are left out. [] for the paper's configuration."""
        paper = load_profile("paper")
        out = []
        for section in ("model", "loss", "train"):
            mine, ref = getattr(self, section), getattr(paper, section)
            for f in fields(mine):
                if (section, f.name) in NOT_RECIPE:
                    continue
                a, b = getattr(mine, f.name), getattr(ref, f.name)
                if a != b:
                    out.append(f"{section}.{f.name}={a} (paper: {b})")
        return out

    @property
    def recipe(self) -> str:
        """What every output of a run names as its recipe: "paper" or "<profile>: <differences>"."""
        diffs = self.recipe_differences()
        return "paper" if not diffs else f"{self.profile} ({'; '.join(diffs)})"

    @property
    def uses_standins(self) -> list[str]:
        """Stand-ins this config chose; every output made with it names them."""
        out = []
        if self.loss.vgg_standin:
            out.append("VGG19 perceptual loss: random-init stand-in")
        if self.eval.fid_features != "inception":
            out.append("FD-dlib (dlib descriptor) in place of Inception FID")
        return out


# settings that change how a run is kept and watched, not what it learns
NOT_RECIPE = {("train", k) for k in ("checkpoint_every", "sample_every", "log_every", "device",
                                      "channels_last", "compile", "num_workers", "deterministic", "seed")}


class SettingError(KeyError):
    """An unknown setting or a value of the wrong type: a KeyError (and a ValueError, so that every
    command line's one-line handler takes it) whose str() is the plain one-line message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class SettingTypeError(SettingError, ValueError):
    pass


def _coerce(value, annotation: str, where: str):
    """`value` checked (and converted where lossless) against a field annotation such as
    'int', 'float', 'str | None', 'tuple[str, ...]'. SettingTypeError naming `where` otherwise."""
    kinds = [a.strip() for a in str(annotation).split("|")]

    def fail(want):
        raise SettingTypeError(f"{where} must be {want}, got {value!r} ({type(value).__name__})")
    if value is None:
        return value if "None" in kinds else fail(" or ".join(k for k in kinds))
    boolean = isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"
    for kind in kinds:
        if kind == "bool" and boolean:
            return bool(value)
        if kind == "str" and isinstance(value, str):
            return value
        if kind == "int" and not boolean:
            v = value
            if isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    continue
            if isinstance(v, numbers.Integral):
                return int(v)
            if isinstance(v, numbers.Real) and math.isfinite(v) and float(v).is_integer():
                return int(v)
        if kind == "float" and not boolean and isinstance(value, (numbers.Real, str)):
            try:
                v = float(value)
            except ValueError:
                continue
            if math.isfinite(v):
                return v
        if kind.startswith("tuple[") and isinstance(value, (list, tuple)):
            inner = kind[len("tuple["):].split(",")[0].strip()
            return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    names = {"int": "an integer", "float": "a finite number", "bool": "true or false", "str": "a string",
             "None": "null"}
    fail(" or ".join(names.get(k, "a list") for k in kinds))


FLOAT32_MAX = 3.4028234663852886e38      # the optimisers and the nets hold float32
# What each number may be, beyond its type: (test, what to say). Values outside are a
# SettingRangeError naming the setting; the rules between settings are in check_config.
LIMITS = {
    "data.image_size": (lambda v: 16 <= v <= 4096, "between 16 and 4096 pixels"),
    "data.crop_margin": (lambda v: 0 <= v <= 2, "a fraction in [0, 2]"),
    "data.first_k": (lambda v: v >= 0, "0 or more frames"),
    "data.last_k": (lambda v: v >= 0, "0 or more frames"),
    "data.val_fraction": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "data.detector_upsample": (lambda v: v >= 0, "0 or more"),
    "model.image_size": (lambda v: 16 <= v <= 4096, "between 16 and 4096 pixels"),
    "model.num_landmarks": (lambda v: v == 68, ("68 (dlib's iBUG points: the kit's detector, crops and heatmaps "
                                                 "have no other layout)")),
    "model.num_classes": (lambda v: v >= 1, "1 or more"),
    "model.ngf": (lambda v: v >= 1, "1 or more channels"),
    "model.ndf": (lambda v: v >= 1, "1 or more channels"),
    "model.n_downsampling": (lambda v: 0 <= v <= 8, "between 0 and 8"),
    "model.n_blocks": (lambda v: v >= 1, "1 or more migration unit blocks"),
    "model.dropout": (lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    "model.heatmap_sigma": (lambda v: v > 0, "a positive number of pixels"),
    "model.init_gain": (lambda v: v > 0, "a positive number"),
    "model.output": (lambda v: v in ("decoder", "blend"), "'decoder' (the paper's) or 'blend'"),
    "loss.lambda_gan": (lambda v: v >= 0, "0 or more"),
    "loss.lambda_perceptual": (lambda v: v >= 0, "0 or more"),
    "loss.lambda_pixel": (lambda v: v >= 0, "0 or more"),
    "loss.gan_objective": (lambda v: v in ("bce", "lsgan"), "'bce' (the paper's) or 'lsgan'"),
    "train.steps": (lambda v: v >= 1, "1 or more"),
    "train.batch_size": (lambda v: v >= 1, "1 or more"),
    "train.lr": (lambda v: 0 < v <= FLOAT32_MAX, (f"a positive number a float32 optimiser can hold (at most "
                                                   f"{FLOAT32_MAX:.2g})")),
    "train.d_lr": (lambda v: v is None or 0 < v <= FLOAT32_MAX, "empty (train.lr) or a positive number"),
    "train.beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.lr_decay_start": (lambda v: 0 <= v <= 1, "a fraction of the steps in [0, 1]"),
    "train.gan_start": (lambda v: 0 <= v <= 1, "a fraction of the steps in [0, 1]"),
    "train.checkpoint_every": (lambda v: v >= 1, "1 or more steps"),
    "train.sample_every": (lambda v: v >= 1, "1 or more steps"),
    "train.log_every": (lambda v: v >= 1, "1 or more steps"),
    "train.num_workers": (lambda v: v >= 0, "0 or more"),
    "eval.max_pairs": (lambda v: v >= 0, "0 (all) or more"),
    "eval.kid_subset_size": (lambda v: v >= 1, "1 or more"),
    "eval.kid_subsets": (lambda v: v >= 1, "1 or more"),
}


class SettingRangeError(SettingError, ValueError):
    pass


def check_settings(section, where: str):
    """One section (DataConfig, ModelConfig, ...) checked as `config.<where>`: every value of its
    field's type (converted where lossless, as a profile's are) and within LIMITS. Returns it;
    SettingTypeError / SettingRangeError with one line naming the setting otherwise."""
    for f in fields(section):
        name = f"{where}.{f.name}"
        value = _coerce(getattr(section, f.name), f.type, f"config.{name}")
        setattr(section, f.name, value)
        test, want = LIMITS.get(name, (None, ""))
        if test is not None and not test(value):
            raise SettingRangeError(f"config.{name} must be {want}, got {value!r}")
    return section


def check_config(cfg: Config) -> Config:
    """Every section through check_settings, then the rules between settings. Config.from_dict and
    .updated (so load_profile and every checkpoint's config) call it; so does the trainer."""
    for section in ("data", "model", "loss", "train", "eval"):
        check_settings(getattr(cfg, section), section)
    d, m = cfg.data, cfg.model
    if d.first_k + d.last_k < 1:
        raise SettingRangeError(f"config.data.first_k + last_k must keep at least one frame, got {d.first_k} + "
                                f"{d.last_k}")
    f = 2 ** m.n_downsampling
    if m.image_size % f or m.image_size // f < 4:
        raise SettingRangeError(f"config.model.n_downsampling {m.n_downsampling} does not fit "
                                f"model.image_size {m.image_size}: the size must be divisible by 2**n_downsampling "
                                f"= {f}, leaving at least 4 pixels")
    return cfg


def _update(obj, overrides: dict, where: str = "config"):
    names = {f.name: f for f in fields(obj)}
    if not isinstance(overrides, dict):
        raise SettingTypeError(f"{where} must be a mapping, got {overrides!r}")
    for key, value in overrides.items():
        if key not in names:
            raise SettingError(f"unknown setting {where}.{key}; known: {', '.join(names)}")
        cur = getattr(obj, key)
        if dataclasses.is_dataclass(cur):
            if not isinstance(value, dict):
                raise SettingTypeError(f"{where}.{key} must be a mapping, got {value!r}")
            _update(cur, value, f"{where}.{key}")
        else:
            setattr(obj, key, _coerce(value, names[key].type, f"{where}.{key}"))
    return obj


def profile_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    q = PROFILE_DIR / f"{name_or_path}.yaml"
    if q.is_file():
        return q
    known = ", ".join(sorted(x.stem for x in PROFILE_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"no profile {name_or_path!r}: give one of {known} or a .yaml path")


def read_profile(name_or_path: str | Path) -> dict[str, Any]:
    """The raw profile mapping: {config: ..., synth: ..., notebooks: ...}."""
    path = profile_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"profile {path} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"profile {path} must be a mapping with config:, synth:, notebooks:; "
                         f"got {type(raw).__name__}")
    unknown = set(raw) - {"config", "synth", "notebooks", "description"}
    if unknown:
        raise KeyError(f"profile {name_or_path}: unknown top-level keys {sorted(unknown)}")
    return raw


def load_profile(name_or_path: str | Path = "smoke", overrides: dict | None = None) -> Config:
    """Config = defaults <- profile's `config:` <- overrides."""
    raw = read_profile(name_or_path)
    cfg = Config.from_dict(raw.get("config") or {})
    folder = profile_path(name_or_path).resolve().parent
    for section, key in WEIGHT_PATHS:                    # relative to the profile file, not the cwd
        v = getattr(getattr(cfg, section), key)
        if isinstance(v, str) and v and not Path(v).expanduser().is_absolute():
            setattr(getattr(cfg, section), key, str(folder / Path(v).expanduser()))
    cfg.profile = Path(name_or_path).stem if str(name_or_path).endswith((".yaml", ".yml")) else str(name_or_path)
    return cfg.updated(overrides)


WEIGHT_PATHS = (("loss", "vgg_weights"), ("eval", "inception_weights"), ("eval", "lightcnn_weights"),
                ("eval", "vggface_weights"))


def notebook_parameters(name_or_path: str | Path, notebook: str) -> dict[str, Any]:
    """Parameters papermill injects into `notebook` (its stem, e.g. '03_training') for a profile."""
    nbs = read_profile(name_or_path).get("notebooks") or {}
    params = {k: v for k, v in nbs.items() if not isinstance(v, dict)}
    params.update(nbs.get(notebook) or {})
    return params
