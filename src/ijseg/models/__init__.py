"""Networks (U-Net), losses and metrics, and the model folder. Imports TensorFlow lazily."""
