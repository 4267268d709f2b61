"""zoo: a PyTorch trainer and model zoo that trains one run from one config."""
