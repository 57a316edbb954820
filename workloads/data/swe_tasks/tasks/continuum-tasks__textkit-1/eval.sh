#!/bin/bash
set -uxo pipefail
cd "${TESTBED:-/testbed}"
git -c core.fileMode=false status
git checkout 0e0c4383814e9c6850438ca75bcec39e355036da -- tests/test_slug.py
git apply -v - <<'EOF_TEST_PATCH'
diff --git a/tests/test_slug.py b/tests/test_slug.py
index 4d8e7b2..dcbfb33 100644
--- a/tests/test_slug.py
+++ b/tests/test_slug.py
@@ -7,3 +7,8 @@ def test_slugify_joins_words_with_dashes():
 
 def test_slugify_drops_punctuation():
     assert slugify("a, b! c?") == "a-b-c"
+
+
+def test_slugify_lowercases():
+    assert slugify("Hello World") == "hello-world"
+    assert slugify("Make It SHORT") == "make-it-short"
EOF_TEST_PATCH
: '>>>>> Start Test Output'
python -m pytest -rA -p no:cacheprovider tests/test_slug.py
: '>>>>> End Test Output'
git checkout 0e0c4383814e9c6850438ca75bcec39e355036da -- tests/test_slug.py
