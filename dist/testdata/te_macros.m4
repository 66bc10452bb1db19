dnl The few AOSP sepolicy macros workcelld.te uses, written out for the
dnl compile test (dist_test.go): the same expansions as AOSP's te_macros and
dnl global_macros, reduced to what this file needs.
define(`global_capability_class_set', `{ capability cap_userns }')dnl
define(`global_capability2_class_set', `{ capability2 cap2_userns }')dnl
define(`r_file_perms', `{ getattr open read ioctl lock map watch watch_reads }')dnl
define(`w_file_perms', `{ open append write lock map }')dnl
define(`rw_file_perms', `{ r_file_perms w_file_perms }')dnl
define(`x_file_perms', `{ getattr execute execute_no_trans map }')dnl
define(`rx_file_perms', `{ r_file_perms x_file_perms }')dnl
define(`create_file_perms', `{ create rename setattr unlink rw_file_perms }')dnl
define(`r_dir_perms', `{ open getattr read search ioctl lock watch watch_reads }')dnl
define(`w_dir_perms', `{ open search write add_name remove_name lock }')dnl
define(`create_dir_perms', `{ create reparent rename rmdir setattr r_dir_perms w_dir_perms }')dnl
define(`rw_socket_perms_no_ioctl', `{ read getattr write setattr lock append bind connect getopt setopt shutdown map }')dnl
define(`create_socket_perms_no_ioctl', `{ create rw_socket_perms_no_ioctl }')dnl
define(`create_socket_perms', `{ create ioctl rw_socket_perms_no_ioctl }')dnl
define(`create_stream_socket_perms', `{ create ioctl listen accept rw_socket_perms_no_ioctl }')dnl
define(`domain_trans', `
allow $1 $2:file { getattr open read execute map };
allow $1 $3:process transition;
allow $3 $2:file { entrypoint open read execute getattr map };
ifelse($1, `init', `', `allow $3 $1:process sigchld;')
dontaudit $1 $3:process noatsecure;
allow $1 $3:process { siginh rlimitinh };
')dnl
define(`init_daemon_domain', `
domain_trans(init, $1_exec, $1)
type_transition init $1_exec:process $1;
')dnl
define(`unix_socket_connect', `
allow $1 $2_socket:sock_file write;
allow $1 $3:unix_stream_socket connectto;
')dnl
