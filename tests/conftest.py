"""Suite-wide test settings."""

from hypothesis import settings

# No per-example deadline: on the 2-core CI machine a property example can exceed hypothesis's
# default 200 ms while another process competes for the cores, which fails a correct test.
settings.register_profile("v2p", deadline=None)
settings.load_profile("v2p")
