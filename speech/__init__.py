"""Codec language models for speech: VALL-E 2, CLaM-TTS, SpeechSSM."""
