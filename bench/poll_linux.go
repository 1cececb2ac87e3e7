package main

import (
	"syscall"
	"unsafe"
)

// unixPollFd is struct pollfd; the syscall package has no poll(2).
type unixPollFd struct {
	fd      int32
	events  int16
	revents int16
}

const pollIn = 0x1

func poll(fds []unixPollFd, timeoutMs int) {
	syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&fds[0])), uintptr(len(fds)), uintptr(timeoutMs))
}
