"""Shared reads of keys."""

from keys.models import KemPreKey, LastResortKey, OneTimePreKey, SignedPreKey


def key_summary(device) -> str:
    """Per-identity key counts of a device for operators; never key bytes."""
    parts = []
    for identity, name in ((0, "ACI"), (1, "PNI")):
        ec = OneTimePreKey.objects.filter(device=device, identity=identity).count()
        kem = KemPreKey.objects.filter(device=device, identity=identity).count()
        signed = SignedPreKey.objects.filter(device=device, identity=identity).exists()
        last_resort = LastResortKey.objects.filter(device=device, identity=identity).exists()
        parts.append(
            f"{name}: {ec} EC, {kem} Kyber one-time; signed {'yes' if signed else 'no'}, "
            f"last resort {'yes' if last_resort else 'no'}"
        )
    return " · ".join(parts)
