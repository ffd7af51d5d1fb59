"""The audio model attempts (docs/MODEL_CARD_AUDIO.md: none passed its ship rule, none ships): the speech data
and its seeded degradations (speech_data, audio_augment), the speech CNN (speech_train), the pretrained voice
encoder's head (voice_embed) and the fusion choice over out-of-fold scores (fusion_choice). The inference side
they write files for (SpeechCNN, VoiceEncoderClassifier, the speech front ends) stays in the package: it backs
`--audio-model PATH`."""
