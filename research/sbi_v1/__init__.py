"""SBI v1, the first built-in video model (retired; docs/MODEL_CARD_SBI_V1.md): its real-only fine-tuning recipe
(selfblend) and the dev-eval half-split protocol it was measured with (halfsplit). The self-blending itself
(deepfake_core.train.sbi) and the landmark helpers (deepfake_core.train.selfblend) stay in the package: the
shipped model's pooled recipe uses them."""
