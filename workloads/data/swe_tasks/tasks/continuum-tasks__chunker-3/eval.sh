#!/bin/bash
set -uxo pipefail
cd "${TESTBED:-/testbed}"
git -c core.fileMode=false status
git checkout 9d7aac6383dafe77e73f760e89e4d64bee71bbbe -- tests/test_core.py
git apply -v - <<'EOF_TEST_PATCH'
diff --git a/tests/test_core.py b/tests/test_core.py
index 37d4c92..14ca7c6 100644
--- a/tests/test_core.py
+++ b/tests/test_core.py
@@ -10,3 +10,8 @@ def test_even_split():
 def test_size_must_be_positive():
     with pytest.raises(ValueError):
         chunks([1], 0)
+
+
+def test_last_chunk_keeps_the_remainder():
+    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
+    assert chunks([1, 2], 5) == [[1, 2]]
EOF_TEST_PATCH
: '>>>>> Start Test Output'
python -m pytest -rA -p no:cacheprovider tests/test_core.py
: '>>>>> End Test Output'
git checkout 9d7aac6383dafe77e73f760e89e4d64bee71bbbe -- tests/test_core.py
