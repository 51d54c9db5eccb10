"""The packaged studies: ready-made sweep files, one lesson each (`fitlens studies` lists them)."""
