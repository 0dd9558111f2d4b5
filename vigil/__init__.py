"""The top floor: the `vigil` command line (:mod:`vigil.cli`, assembling each area's
commands), the whole pipeline on one machine (:mod:`vigil.local`, `vigil demo`) and the
benches. The only package that imports every area; none imports it."""
