"""Long-range DNA models: HyenaDNA and Caduceus."""
