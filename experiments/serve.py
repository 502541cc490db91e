"""An OpenAI-compatible step-routing proxy in front of a device and a cloud model (also the `hera-serve` script).

    python experiments/serve.py --checkpoint runs/il/<run>/checkpoint \
        --device-base-url http://127.0.0.1:8081/v1 --cloud-base-url https://api.example.com/v1 --cloud-share 0.3
"""

from hera_jax.serve.app import main

if __name__ == "__main__":
    main()
