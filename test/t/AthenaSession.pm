# An open psql session that a TAP test feeds statements one at a time and
# reads the answers of, for PostgreSQL 15 minors whose TAP modules have no
# BackgroundPsql: the session (and so its backend's caches, or its open
# transaction) stays alive between statements.
package AthenaSession;
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;

# AthenaSession->new($node, $dbname): start psql on the node's database.
sub new
{
	my ($class, $node, $dbname) = @_;
	my $self = { in => '', out => '', err => '',
		timer => IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default) };
	$self->{handle} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-d', $node->connstr($dbname) ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err}, $self->{timer});
	return bless $self, $class;
}

# $session->send($sql): start a statement without waiting for its answer.
# It must end with a semicolon: psql would otherwise keep it in its buffer
# and run the marker after it at once, so the answer would be empty and
# the statement never sent.
sub send
{
	my ($self, $sql) = @_;
	die "AthenaSession: end the statement with a semicolon: $sql\n"
	  unless $sql =~ /;\s*\z/;
	$self->{out} = '';
	$self->{err} = '';
	$self->{timer}->start($PostgreSQL::Test::Utils::timeout_default);
	$self->{in} .= "$sql\n\\echo __athena_done__\n";
	$self->{handle}->pump_nb();
	return;
}

# $session->result: the answer of the statement started with send: what it
# printed (stdout, without the final newline); its messages (errors,
# warnings) are in $session->{err}.
sub result
{
	my ($self) = @_;
	pump_until($self->{handle}, $self->{timer}, \$self->{out}, qr/__athena_done__\n/)
	  or die "psql session did not answer: $self->{err}";
	(my $answer = $self->{out}) =~ s/\n?__athena_done__\n\z//;
	return $answer;
}

# $session->query($sql): send it and wait for its answer.
sub query
{
	my ($self, $sql) = @_;
	$self->send($sql);
	return $self->result;
}

# $session->quit: end psql.
sub quit
{
	my ($self) = @_;
	$self->{in} .= "\\q\n";
	$self->{handle}->finish;
	return;
}

1;
