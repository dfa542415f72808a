"""Building and checking what is deployed: the FC layer and code, the SAM build, and s.yaml read offline."""
