package records

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// JSONLWriter appends one JSON object per line and writes each line with a single write,
// so a crash leaves at most one half-written last line behind.
type JSONLWriter struct {
	mu sync.Mutex
	f  *os.File
}

// CreateJSONL opens path for appending, creating it if needed.
func CreateJSONL(path string) (*JSONLWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &JSONLWriter{f: f}, nil
}

// Append writes v as one line.
func (w *JSONLWriter) Append(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(b); err != nil {
		return fmt.Errorf("append to %s: %w", w.f.Name(), err)
	}
	return nil
}

// Close closes the file.
func (w *JSONLWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.f.Close()
}
