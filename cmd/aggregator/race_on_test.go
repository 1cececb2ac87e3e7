//go:build race

package main

// raceBuild: the suite runs under the race detector, and so does every
// daemon it starts.
const raceBuild = true
