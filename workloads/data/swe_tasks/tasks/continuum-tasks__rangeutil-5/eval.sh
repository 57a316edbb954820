#!/bin/bash
set -uxo pipefail
cd "${TESTBED:-/testbed}"
git -c core.fileMode=false status
git checkout e58d0cd37d7eafcc10a79b5cbeb5a2029f2fae82 -- tests/test_clamp.py
git apply -v - <<'EOF_TEST_PATCH'
diff --git a/tests/test_clamp.py b/tests/test_clamp.py
index fc1780c..3b97209 100644
--- a/tests/test_clamp.py
+++ b/tests/test_clamp.py
@@ -14,3 +14,7 @@ def test_above_is_hi():
 def test_empty_range_raises():
     with pytest.raises(ValueError):
         clamp(1, 2, 1)
+
+
+def test_below_is_lo():
+    assert clamp(-3, 0, 10) == 0
EOF_TEST_PATCH
: '>>>>> Start Test Output'
python -m pytest -rA -p no:cacheprovider tests/test_clamp.py
: '>>>>> End Test Output'
git checkout e58d0cd37d7eafcc10a79b5cbeb5a2029f2fae82 -- tests/test_clamp.py
