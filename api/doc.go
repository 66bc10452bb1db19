// Package api holds the control API of workcelld: the JSON wire types, the
// error classes shared by server and client, and a client that speaks
// HTTP/1.1 over the daemon's unix socket.
//
// It builds on every OS: the CLI and any UI use it without Linux-only code.
package api
