package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

type recorder struct {
	*httptest.ResponseRecorder
	code int
}

func newRecorder() *recorder { return &recorder{ResponseRecorder: httptest.NewRecorder()} }

func (r *recorder) WriteHeader(code int) {
	r.code = code
	r.ResponseRecorder.WriteHeader(code)
}

func mustRequest(t *testing.T, target string) *http.Request {
	t.Helper()
	return httptest.NewRequest("GET", target, nil)
}
