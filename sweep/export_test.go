package sweep

// ReadRows is readRows for the external tests (e2e_test.go).
var ReadRows = readRows
