#!/bin/bash
set -uxo pipefail
cd "${TESTBED:-/testbed}"
git -c core.fileMode=false status
git checkout 05267399f6f4005eb7e983fbbd851d8a509c9dd3 -- tests/test_central.py
git apply -v - <<'EOF_TEST_PATCH'
diff --git a/tests/test_central.py b/tests/test_central.py
index 6c6bc6b..d4311d5 100644
--- a/tests/test_central.py
+++ b/tests/test_central.py
@@ -15,3 +15,8 @@ def test_median_even_and_odd():
 def test_median_empty_raises():
     with pytest.raises(ValueError):
         median([])
+
+
+def test_mean_empty_raises_value_error():
+    with pytest.raises(ValueError, match="empty"):
+        mean([])
EOF_TEST_PATCH
: '>>>>> Start Test Output'
python -m pytest -rA -p no:cacheprovider tests/test_central.py
: '>>>>> End Test Output'
git checkout 05267399f6f4005eb7e983fbbd851d8a509c9dd3 -- tests/test_central.py
