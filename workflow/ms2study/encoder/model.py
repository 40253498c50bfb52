"""The spectrum encoder: a transformer over peak tokens that maps one MS/MS spectrum to an L2-normalised vector.

Each peak becomes a token built from Fourier features of its m/z (sines and cosines over wavelengths from a
millidalton to thousands of daltons, phases computed in float64 so sub-millidalton differences survive), the
same features of its neutral loss (precursor minus peak), and its intensity relative to the base peak (square
root and log scale). One extra token carries the precursor m/z. A pre-norm transformer encoder with a padding
mask mixes the tokens; the valid tokens are mean-pooled (or the precursor token is read, ``pooling: "cls"``)
and projected to ``dim``. Sizes live in an ``EncoderConfig`` that is saved as ``config.json`` beside the
``model.safetensors`` weights; ``load_encoder`` checks the format version, the architecture keys and every
tensor shape and refuses a mismatch with an ``InputError``. ``load_encoder(None, seed)`` gives a seeded,
untrained placeholder whose ``info["trained"]`` is False so reports can say so plainly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ms2study import __version__
from ms2study.core.atomic import atomic_path, write_text
from ms2study.core.errors import InputError
from ms2study.encoder.checkpoints import CONFIG_FILE, WEIGHTS_FILE

# Bump when the meaning of the weights or of config.json changes; checkpoints of another format are refused.
FORMAT_VERSION = 1
FORMAT_NAME = "ms2study-spectrum-encoder"


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of the encoder (everything needed to rebuild it before loading weights)."""

    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_ff: int = 1024
    dim: int = 256                      # output embedding size
    dropout: float = 0.1                # training only; inference runs in eval mode
    n_fourier: int = 32                 # frequencies per m/z encoding (each gives a sine and a cosine)
    min_wavelength_da: float = 1e-3     # shortest period: 1 mDa, so 0.1 mDa shifts the phase by 36 degrees
    max_wavelength_da: float = 1e4      # longest period: larger than any m/z, so coarse mass is unambiguous
    neutral_losses: bool = True         # also encode precursor - peak m/z (losses are what isomers differ in)
    pooling: str = "mean"               # "mean" over valid tokens, or "cls" (the precursor token)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise InputError(f"encoder config: d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.pooling not in ("mean", "cls"):
            raise InputError(f"encoder config: pooling must be 'mean' or 'cls', not {self.pooling!r}")
        if not 0 < self.min_wavelength_da < self.max_wavelength_da:
            raise InputError("encoder config: need 0 < min_wavelength_da < max_wavelength_da")

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, file: str | None = None) -> EncoderConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"unknown encoder architecture key(s) {unknown}", file=file,
                fix=f"use only {sorted(known)} (was the checkpoint written by a newer ms2study?)",
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FourierMz(nn.Module):
    """Sine/cosine features of a mass at geometrically spaced wavelengths (no learned parameters)."""

    def __init__(self, n_fourier: int, min_wavelength: float, max_wavelength: float):
        super().__init__()
        wavelengths = torch.logspace(
            math.log10(min_wavelength), math.log10(max_wavelength), n_fourier, dtype=torch.float64
        )
        # A buffer (saved in the checkpoint), so a changed wavelength grid is caught as a mismatch on load.
        self.register_buffer("inv_wavelength", 1.0 / wavelengths)

    def forward(self, mass: torch.Tensor) -> torch.Tensor:
        # The fractional phase is taken in float64: at m/z 1000 float32 resolves only ~60 microdaltons and the
        # product with 1/1 mDa would lose every digit that matters. After the modulo, float32 is plenty.
        phase = torch.remainder(mass.to(torch.float64).unsqueeze(-1) * self.inv_wavelength, 1.0)
        angle = (2.0 * math.pi) * phase.to(torch.float32)
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class SpectrumEncoder(nn.Module):
    """Peaks (m/z, intensity) + precursor m/z -> L2-normalised embedding of size ``config.dim``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.fourier = FourierMz(c.n_fourier, c.min_wavelength_da, c.max_wavelength_da)
        n_mass = 2 * c.n_fourier
        peak_in = n_mass * (2 if c.neutral_losses else 1) + 2  # + sqrt and log intensity
        self.peak_embed = nn.Sequential(nn.Linear(peak_in, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model))
        self.precursor_embed = nn.Sequential(nn.Linear(n_mass, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model))
        self.precursor_type = nn.Parameter(torch.zeros(c.d_model))
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, c.d_ff, dropout=c.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.dim)
        nn.init.normal_(self.precursor_type, std=0.02)

    def forward(
        self, mz: torch.Tensor, intensity: torch.Tensor, precursor_mz: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Embed a padded batch.

        ``mz`` (B, L) float64, ``intensity`` (B, L) relative to the base peak (0..1], ``precursor_mz`` (B,)
        float64 (NaN or <= 0 when unknown), ``mask`` (B, L) bool, True for real peaks. Returns (B, dim) float32.
        """
        intensity = intensity.to(torch.float32).clamp(min=0.0)
        # sqrt keeps mid-size fragments visible; the log scale (1e-4..1 -> 0..1) separates the small ones.
        log_int = 1.0 + torch.log10(intensity.clamp(min=1e-4)) / 4.0
        parts = [self.fourier(mz)]
        precursor_known = torch.isfinite(precursor_mz) & (precursor_mz > 0)
        precursor = torch.where(precursor_known, precursor_mz, torch.zeros_like(precursor_mz))
        if self.config.neutral_losses:
            loss = precursor.unsqueeze(-1).to(torch.float64) - mz.to(torch.float64)
            # Without a precursor the loss is meaningless: zero features instead of noise.
            parts.append(self.fourier(loss) * precursor_known[:, None, None].to(torch.float32))
        parts += [intensity.sqrt().unsqueeze(-1), log_int.unsqueeze(-1)]
        tokens = self.peak_embed(torch.cat(parts, dim=-1))
        prec_features = self.fourier(precursor) * precursor_known[:, None].to(torch.float32)
        prec_token = self.precursor_embed(prec_features) + self.precursor_type
        x = torch.cat([prec_token.unsqueeze(1).to(tokens.dtype), tokens], dim=1)
        valid = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        x = self.transformer(x, src_key_padding_mask=~valid)
        x = self.final_norm(x)
        if self.config.pooling == "cls":
            pooled = x[:, 0]
        else:
            weights = valid.to(x.dtype).unsqueeze(-1)
            pooled = (x * weights).sum(dim=1) / weights.sum(dim=1)
        out = self.head(pooled).to(torch.float32)
        return nn.functional.normalize(out, dim=-1)


def build_encoder(config: EncoderConfig, seed: int = 0) -> SpectrumEncoder:
    """A freshly initialised encoder whose weights depend only on ``config`` and ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpectrumEncoder(config)
    return model.eval()


def _weights_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def save_encoder(
    model: SpectrumEncoder, out_dir: str | os.PathLike, *, name: str = "encoder", training: dict | None = None
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (format + ms2study versions, architecture) atomically."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION)})
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "ms2study_version": __version__,
        "name": name,
        "trained": training is not None,
        "weights_sha256": _weights_digest(state),
        "architecture": model.config.to_dict(),
        "training": training or {},
    }
    write_text(json.dumps(meta, indent=2) + "\n", out / CONFIG_FILE)
    return out


def _read_config(model_dir: Path) -> dict[str, Any]:
    config_path = model_dir / CONFIG_FILE
    weights_path = model_dir / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.exists():
            raise InputError(
                f"encoder checkpoint is incomplete: {path.name} is missing", file=str(model_dir),
                fix=f"point 'embed: model' at a folder holding {WEIGHTS_FILE} and {CONFIG_FILE} "
                "(written by 'ms2study train'), or set it to null for the untrained placeholder",
            )
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"{CONFIG_FILE} is not valid JSON ({err})", file=str(config_path)) from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise InputError(
            f"not an ms2study encoder config (format is {meta.get('format') if isinstance(meta, dict) else None!r}, "
            f"expected {FORMAT_NAME!r})", file=str(config_path),
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"encoder checkpoint has format version {meta.get('format_version')!r} (written by ms2study "
            f"{meta.get('ms2study_version', '?')}); this ms2study {__version__} reads format {FORMAT_VERSION} only",
            file=str(config_path),
            fix="use an ms2study version that matches the checkpoint, or retrain with 'ms2study train'",
        )
    if not isinstance(meta.get("architecture"), dict):
        raise InputError("encoder config has no 'architecture' object", file=str(config_path))
    return meta


def load_encoder(
    model_dir: str | os.PathLike | None, seed: int = 0, device: str | torch.device = "cpu"
) -> tuple[SpectrumEncoder, EncoderConfig, dict[str, Any]]:
    """Load a checkpoint folder, or build the seeded untrained placeholder when ``model_dir`` is None.

    Returns ``(model in eval mode, config, info)``; ``info`` has ``trained`` (bool), ``model_id`` (stable name
    for caches: changes whenever the weights change), ``source``, ``ms2study_version`` and ``description``.
    """
    if model_dir is None:
        config = EncoderConfig()
        model = build_encoder(config, seed).to(device)
        digest = _weights_digest(model.state_dict())
        info = {
            "trained": False,
            "model_id": f"untrained-seed{seed}-{digest[:12]}",
            "source": "placeholder",
            "seed": seed,
            "format_version": FORMAT_VERSION,
            "ms2study_version": __version__,
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "description": (
                f"UNTRAINED placeholder encoder (random weights from seed {seed}): its embeddings reflect only "
                "peak positions through random projections and carry no learned chemistry"
            ),
        }
        return model, config, info

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(model_dir)
    meta = _read_config(path)
    config = EncoderConfig.from_dict(meta["architecture"], file=str(path / CONFIG_FILE))
    model = build_encoder(config, seed)
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as err:
        raise InputError(f"cannot read {WEIGHTS_FILE} ({err})", file=str(path)) from err
    expected = model.state_dict()
    problems = [f"missing tensor {k}" for k in expected if k not in state]
    problems += [f"unexpected tensor {k}" for k in state if k not in expected]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} in checkpoint, {tuple(v.shape)} expected"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError(
            f"encoder weights do not match config.json: {'; '.join(problems[:5])}{more}", file=str(path),
            fix="keep model.safetensors and config.json of the same training run together",
        )
    model.load_state_dict(state)
    model = model.eval().to(device)
    trained = bool(meta.get("trained", True))
    info = {
        "trained": trained,
        "model_id": f"{meta.get('name', 'encoder')}-{_weights_digest(state)[:12]}",
        "source": str(path),
        "format_version": FORMAT_VERSION,
        "ms2study_version": meta.get("ms2study_version"),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "training": meta.get("training", {}),
        "description": (
            f"trained encoder '{meta.get('name', 'encoder')}' from {path}" if trained
            else f"UNTRAINED encoder weights saved in {path} (no training recorded)"
        ),
    }
    return model, config, info
