# Pester 5 tests of core/backends/hyperv/dispatcher.ps1, run on Windows (Windows PowerShell 5.1 and
# PowerShell 7; see .github/workflows/windows.yml and docs/hyperv.md). They cannot run on the Linux
# machines the project is built on: there tests/test_pester_files.py only parses these files.
#
# Each Context starts the real dispatcher as a child process, as hvkube does (the same PowerShell
# as the one running the tests, `-File dispatcher.ps1`, stdin and stdout redirected), with
# tests/pester/stub first in its PSModulePath: its `Import-Module Hyper-V` loads the stand-in
# module there (stub\Hyper-V), which keeps an in-memory host seeded by the Context and logs every
# call. The tests talk the dispatcher's protocol (HVKUBE-REQ / HVKUBE-RES / HVKUBE-READY lines)
# and read the stand-in's call log. Pester's Mock cannot reach a child process: the WMI calls go
# to stub\HvkubeCimStub, which the Hyper-V stand-in imports.
#
# ConvertFrom-Json on PowerShell 7 turns date-like strings into DateTime: where the exact text
# matters (dates, the text typed), the tests look at the raw JSON line, or at base64.

BeforeAll {
    $Repo = [System.IO.Path]::GetFullPath((Join-Path $PSScriptRoot '..\..'))
    $DispatcherPath = Join-Path $Repo 'core\backends\hyperv\dispatcher.ps1'
    $StubModules = Join-Path $PSScriptRoot 'stub'
    $Utf8NoBom = New-Object System.Text.UTF8Encoding $false
    $StartTimeoutMs = 120000
    $ReplyTimeoutMs = 60000
    $HeartbeatServiceId = '84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47'
    $OwnerMark = 'hvkube-owner: store=0123456789abcdef0123456789abcdef'

    function New-SeedVM {
        # One VM of the stand-in's host, as the seed file holds it.
        param(
            [Parameter(Mandatory = $true)] [string]$Name,
            [Parameter(Mandatory = $true)] [string]$Id,
            [string]$State = 'Off',
            [object[]]$Checkpoints = @(),
            [System.Collections.IDictionary]$Extra = @{}
        )
        $vm = [ordered]@{
            Name          = $Name
            Id            = $Id
            State         = $State
            Notes         = ''
            MemoryStartup = 2147483648
            Generation    = 2
            CreationTime  = '2024-05-01T10:00:00Z'
            Path          = 'C:\hvkube\vms\' + $Name
            Checkpoints   = @($Checkpoints)
        }
        foreach ($key in @($Extra.Keys)) { $vm[$key] = $Extra[$key] }
        return $vm
    }

    function New-SeedCheckpoint {
        param(
            [Parameter(Mandatory = $true)] [string]$Name,
            [Parameter(Mandatory = $true)] [string]$Id,
            [Parameter(Mandatory = $true)] [string]$CreationTime,
            [string]$State = 'Running'
        )
        return [ordered]@{ Name = $Name; Id = $Id; CreationTime = $CreationTime; State = $State }
    }

    function Read-DispatcherLine {
        param([Parameter(Mandatory = $true)] $Dispatcher, [int]$TimeoutMs = $ReplyTimeoutMs)
        $task = $Dispatcher.Process.StandardOutput.ReadLineAsync()
        if (-not $task.Wait($TimeoutMs)) {
            throw ('the dispatcher wrote no line within {0} ms{1}' -f $TimeoutMs, (Get-DispatcherDiagnostics -Dispatcher $Dispatcher -Kill))
        }
        $line = $task.Result
        if ($null -eq $line) {
            throw ('the dispatcher closed its output{0}' -f (Get-DispatcherDiagnostics -Dispatcher $Dispatcher))
        }
        # Windows PowerShell 5.1 may start its output with a byte order mark (hvkube reads
        # utf-8-sig).
        return $line.TrimStart([char]0xFEFF)
    }

    function Get-DispatcherDiagnostics {
        # Exit code and stderr, for a failure message.
        param([Parameter(Mandatory = $true)] $Dispatcher, [switch]$Kill)
        $process = $Dispatcher.Process
        if ($Kill -and -not $process.HasExited) {
            try { $process.Kill() } catch { }
        }
        $code = 'still running'
        if ($process.WaitForExit(10000)) { $code = [string]$process.ExitCode }
        $stderr = ''
        if ($Dispatcher.Stderr.Wait(5000)) { $stderr = $Dispatcher.Stderr.Result }
        $stray = [string]::Join("`n", $Dispatcher.Stray.ToArray())
        return ("`nexit code: {0}`nother stdout lines:`n{1}`nstderr:`n{2}" -f $code, $stray, $stderr)
    }

    function Start-Dispatcher {
        # The dispatcher in a child process over a stand-in host with these VMs; waits for READY.
        param(
            [object[]]$VMs = @(),
            [System.Collections.IDictionary]$HostSettings = @{},
            [switch]$GhostFailsListing
        )
        $folder = Join-Path $TestDrive ('dispatcher-' + [guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory -Path $folder | Out-Null
        $hostPath = Join-Path $folder 'host.json'
        $logPath = Join-Path $folder 'calls.jsonl'
        $seed = [ordered]@{ Host = $HostSettings; GhostFailsListing = [bool]$GhostFailsListing; VMs = @($VMs) }
        [System.IO.File]::WriteAllText($hostPath, (ConvertTo-Json -InputObject $seed -Depth 10), $Utf8NoBom)

        $info = New-Object System.Diagnostics.ProcessStartInfo
        # The PowerShell running the tests: powershell.exe (5.1) or pwsh.exe (7).
        $info.FileName = [System.Diagnostics.Process]::GetCurrentProcess().MainModule.FileName
        $info.Arguments = '-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "{0}"' -f $DispatcherPath
        $info.UseShellExecute = $false
        $info.CreateNoWindow = $true
        $info.RedirectStandardInput = $true
        $info.RedirectStandardOutput = $true
        $info.RedirectStandardError = $true
        $info.StandardOutputEncoding = $Utf8NoBom
        $info.StandardErrorEncoding = $Utf8NoBom
        $info.EnvironmentVariables['PSModulePath'] = $StubModules + [System.IO.Path]::PathSeparator + $env:PSModulePath
        $info.EnvironmentVariables['HVKUBE_STUB_HOST'] = $hostPath
        $info.EnvironmentVariables['HVKUBE_STUB_LOG'] = $logPath
        $process = [System.Diagnostics.Process]::Start($info)

        $dispatcher = [pscustomobject]@{
            Process  = $process
            Stderr   = $process.StandardError.ReadToEndAsync()
            LogPath  = $logPath
            Stray    = New-Object -TypeName 'System.Collections.Generic.List[string]'
            Ready    = $null
            ReadyRaw = ''
        }
        # The .NET Framework's StandardInput writer sends a byte order mark when it is made (with a
        # UTF-8 console code page); a blank line puts it on a line of its own, which the dispatcher
        # ignores. hvkube itself sends no mark.
        Send-Line -Dispatcher $dispatcher -Line ''
        while ($true) {
            $line = Read-DispatcherLine -Dispatcher $dispatcher -TimeoutMs $StartTimeoutMs
            if ($line.StartsWith('HVKUBE-READY ', [System.StringComparison]::Ordinal)) { break }
            $dispatcher.Stray.Add($line)
        }
        $dispatcher.ReadyRaw = $line.Substring('HVKUBE-READY '.Length)
        $dispatcher.Ready = ConvertFrom-Json -InputObject $dispatcher.ReadyRaw
        return $dispatcher
    }

    function Stop-Dispatcher {
        # Closes its input (the dispatcher then ends), kills it if it does not; the exit code.
        param($Dispatcher)
        if ($null -eq $Dispatcher) { return $null }
        $process = $Dispatcher.Process
        try { $process.StandardInput.Close() } catch { }
        if (-not $process.WaitForExit(15000)) {
            try { $process.Kill() } catch { }
            $null = $process.WaitForExit(5000)
            return $null
        }
        return $process.ExitCode
    }

    function Send-Line {
        param([Parameter(Mandatory = $true)] $Dispatcher, [Parameter(Mandatory = $true)] [string]$Line)
        # UTF-8 bytes without a mark, to the pipe itself (the StandardInput writer's encoding is
        # the console's code page), as hvkube sends them.
        $bytes = $Utf8NoBom.GetBytes($Line + "`n")
        $stream = $Dispatcher.Process.StandardInput.BaseStream
        $stream.Write($bytes, 0, $bytes.Length)
        $stream.Flush()
    }

    function Read-Response {
        # The answer framed with this id; lines before it are kept as stray.
        param([Parameter(Mandatory = $true)] $Dispatcher, [Parameter(Mandatory = $true)] [string]$Id)
        $prefix = 'HVKUBE-RES ' + $Id + ' '
        while ($true) {
            $line = Read-DispatcherLine -Dispatcher $Dispatcher
            if ($line.StartsWith($prefix, [System.StringComparison]::Ordinal)) { break }
            $Dispatcher.Stray.Add($line)
        }
        $raw = $line.Substring($prefix.Length)
        $parsed = ConvertFrom-Json -InputObject $raw
        return [pscustomobject]@{ Raw = $raw; Ok = $parsed.ok; Result = $parsed.result; Error = $parsed.error }
    }

    function Invoke-Op {
        # One request, as hvkube's transport sends it: a fresh hex nonce, the op, its data.
        param(
            [Parameter(Mandatory = $true, Position = 0)] $Dispatcher,
            [Parameter(Mandatory = $true, Position = 1)] [string]$Op,
            [Parameter(Position = 2)] [System.Collections.IDictionary]$Data = @{}
        )
        $id = [guid]::NewGuid().ToString('N').Substring(0, 16)
        $request = [ordered]@{ id = $id; op = $Op; data = $Data }
        Send-Line -Dispatcher $Dispatcher -Line ('HVKUBE-REQ ' + (ConvertTo-Json -InputObject $request -Depth 5 -Compress))
        return Read-Response -Dispatcher $Dispatcher -Id $id
    }

    function Get-StubCalls {
        # The stand-in's log of calls, each parsed, with its raw JSON line as .Raw.
        param([Parameter(Mandatory = $true, Position = 0)] $Dispatcher, [Parameter(Position = 1)] [string]$Command)
        if (-not (Test-Path -LiteralPath $Dispatcher.LogPath)) { return }
        foreach ($line in [System.IO.File]::ReadAllLines($Dispatcher.LogPath)) {
            if ([string]::IsNullOrWhiteSpace($line)) { continue }
            $call = ConvertFrom-Json -InputObject $line
            if ([string]::IsNullOrEmpty($Command) -or $call.cmd -eq $Command) {
                Add-Member -InputObject $call -NotePropertyName Raw -NotePropertyValue $line -PassThru
            }
        }
    }

    function Get-LastStubCall {
        param([Parameter(Mandatory = $true, Position = 0)] $Dispatcher, [Parameter(Mandatory = $true, Position = 1)] [string]$Command)
        $calls = @(Get-StubCalls $Dispatcher $Command)
        if ($calls.Count -eq 0) { throw ('the stand-in saw no {0} call' -f $Command) }
        return $calls[$calls.Count - 1]
    }

    function Test-JsonList {
        # A JSON array as ConvertFrom-Json gives it (object[] on both versions), not a single object.
        param($Value)
        return ($Value -is [System.Collections.IList])
    }

    function ConvertTo-Base64Ascii {
        param([string]$Text)
        return [Convert]::ToBase64String([System.Text.Encoding]::ASCII.GetBytes($Text))
    }
}

Describe 'dispatcher.ps1 in a child process, over a stand-in Hyper-V module' {

    Context 'the session' {
        BeforeAll {
            $VmId = '5d3b7a0e-0b1c-4d2e-8f3a-9b8c7d6e5f41'
            $d = Start-Dispatcher -VMs @(New-SeedVM -Name 'web-001' -Id $VmId -State 'Running')
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'says READY with protocol 2 and the session''s rights and host' {
            $d.Ready.protocol | Should -Be 2
            ($d.Ready.elevated -is [bool]) | Should -BeTrue -Because $d.ReadyRaw
            ($d.Ready.hyperVAdmin -is [bool]) | Should -BeTrue -Because $d.ReadyRaw
            $d.Ready.osVersion | Should -Match '^\d+\.\d+\.\d+' -Because $d.ReadyRaw
            $d.Ready.ps | Should -BeExactly $PSVersionTable.PSVersion.ToString()
            $d.Ready.edition | Should -BeExactly ([string]$PSVersionTable['PSEdition'])
        }

        It 'loaded the stand-in Hyper-V module without an error' {
            $d.Ready.moduleError | Should -BeNullOrEmpty -Because $d.ReadyRaw
            $r = Invoke-Op $d 'vm_list'
            @($r.Result.Items | ForEach-Object { $_.Name }) | Should -Be @('web-001') -Because 'only the stand-in host has this VM'
        }

        It 'lists its operations in READY as an array' {
            (Test-JsonList $d.Ready.ops) | Should -BeTrue -Because $d.ReadyRaw
            foreach ($op in 'ping', 'vm_list', 'vm_find', 'vm_get', 'checkpoint_list', 'checkpoint_restore', 'vm_type_text', 'wmi_job') {
                $d.Ready.ops | Should -Contain $op
            }
        }

        It 'answers ping with the PowerShell version' {
            $r = Invoke-Op $d 'ping'
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.pong | Should -BeTrue
            $r.Result.ps | Should -BeExactly $PSVersionTable.PSVersion.ToString()
        }

        It 'refuses an operation that is not in its table' {
            $r = Invoke-Op $d 'Remove-Item'
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'HvkubeUnknownOperation,*'
            $r.Error.category | Should -BeExactly 'InvalidArgument'
            $r.Error.target | Should -BeExactly 'Remove-Item'
        }

        It 'answers a request whose id is not a hex nonce under the id unknown' {
            Send-Line -Dispatcher $d -Line 'HVKUBE-REQ {"id":"not a nonce","op":"ping","data":{}}'
            $r = Read-Response -Dispatcher $d -Id 'unknown'
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.message | Should -Match 'hex nonce'
        }

        It 'answers a request that is not JSON under the id unknown' {
            Send-Line -Dispatcher $d -Line 'HVKUBE-REQ {this is not json'
            $r = Read-Response -Dispatcher $d -Id 'unknown'
            $r.Ok | Should -BeFalse -Because $r.Raw
        }

        It 'ignores lines without the request mark' {
            $before = $d.Stray.Count
            Send-Line -Dispatcher $d -Line 'hello'
            Send-Line -Dispatcher $d -Line ''
            $r = Invoke-Op $d 'ping'
            $r.Ok | Should -BeTrue -Because $r.Raw
            $d.Stray.Count | Should -Be $before -Because 'nothing answered the unmarked lines'
        }

        It 'answers in UTF-8 (a name with a non-ASCII letter comes back intact)' {
            $name = 'caf' + [char]0x00E9
            # The request travels as hvkube sends it: ASCII JSON with \u escapes.
            Send-Line -Dispatcher $d -Line 'HVKUBE-REQ {"id":"c0ffee","op":"vm_find","data":{"Name":"caf\u00e9"}}'
            $r = Read-Response -Dispatcher $d -Id 'c0ffee'
            $r.Ok | Should -BeTrue -Because $r.Raw
            @($r.Result.Items) | Should -HaveCount 0
            @($r.Result.Errors) | Should -HaveCount 1
            $r.Error | Should -BeNullOrEmpty
            $r.Result.Errors[0].target | Should -BeExactly $name
        }

        It 'writes nothing on stdout but its frames' {
            $d.Stray.Count | Should -Be 0 -Because ([string]::Join("`n", $d.Stray.ToArray()))
        }

        It 'ends with exit code 0 when its input closes' {
            Stop-Dispatcher $d | Should -Be 0
        }
    }

    Context 'vm_list' {
        BeforeAll {
            $d = Start-Dispatcher -VMs @(
                New-SeedVM -Name 'web-001' -Id '0a7e4b2c-1d3f-4a5b-8c6d-7e8f9a0b1c2d' -State 'Running'
                New-SeedVM -Name 'ghost' -Id '1b8f5c3d-2e4a-4b6c-9d7e-8f9a0b1c2d3e' -State 'Off' -Extra @{ Broken = $true }
                New-SeedVM -Name 'web-002' -Id '2c9a6d4e-3f5b-4c7d-8e8f-9a0b1c2d3e4f' -State 'Saved'
            )
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'returns the readable VMs and the error for the broken one beside them' {
            $r = Invoke-Op $d 'vm_list'
            $r.Ok | Should -BeTrue -Because $r.Raw
            (Test-JsonList $r.Result.Items) | Should -BeTrue -Because $r.Raw
            @($r.Result.Items | ForEach-Object { $_.Name }) | Should -Be @('web-001', 'web-002')
            (Test-JsonList $r.Result.Errors) | Should -BeTrue -Because $r.Raw
            @($r.Result.Errors) | Should -HaveCount 1
            ($r.Result.Errors[0] -is [string]) | Should -BeTrue -Because $r.Raw
            $r.Result.Errors[0] | Should -Match 'ghost'
        }

        It 'sends each VM''s state by name' {
            $r = Invoke-Op $d 'vm_list'
            @($r.Result.Items | ForEach-Object { $_.State }) | Should -Be @('Running', 'Saved')
            $r.Raw | Should -Not -Match '"State":\d'
        }
    }

    Context 'vm_list with one VM' {
        BeforeAll {
            $d = Start-Dispatcher -VMs @(New-SeedVM -Name 'solo' -Id '3d0b7e5f-4a6c-4d8e-9f0a-1b2c3d4e5f60')
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'still returns Items as a JSON array, and Errors as an empty one' {
            $r = Invoke-Op $d 'vm_list'
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"Items":\[\{'
            $r.Raw | Should -Match '"Errors":\[\]'
            (Test-JsonList $r.Result.Items) | Should -BeTrue
            @($r.Result.Items) | Should -HaveCount 1
        }
    }

    Context 'vm_list with no VM' {
        BeforeAll { $d = Start-Dispatcher -VMs @() }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'returns empty arrays, not null' {
            $r = Invoke-Op $d 'vm_list'
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"Items":\[\]'
            $r.Raw | Should -Match '"Errors":\[\]'
        }
    }

    Context 'a ghost VM that makes a parameterless Get-VM fail' {
        BeforeAll {
            $HealthyId = '4e1c8f6a-5b7d-4e9f-8a1b-2c3d4e5f6071'
            $d = Start-Dispatcher -GhostFailsListing -VMs @(
                New-SeedVM -Name 'ghost' -Id '5f2d9a7b-6c8e-4f0a-9b2c-3d4e5f607182' -Extra @{ Broken = $true }
                New-SeedVM -Name 'web-001' -Id $HealthyId -State 'Running'
            )
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'fails vm_list' {
            $r = Invoke-Op $d 'vm_list'
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'ObjectNotFound,*'
        }

        It 'still reaches the other VMs by Id' {
            foreach ($op in 'vm_get', 'vm_start', 'checkpoint_list', 'vm_ip') {
                $r = Invoke-Op $d $op @{ Id = $HealthyId }
                $r.Ok | Should -BeTrue -Because ('{0}: {1}' -f $op, $r.Raw)
            }
        }
    }

    Context 'vm_get and vm_find' {
        BeforeAll {
            $WebId = '6a3e0b8c-7d9f-4a1b-8c3d-4e5f60718293'
            $CriticalId = '7b4f1c9d-8e0a-4b2c-9d4e-5f6071829304'
            $MissingId = '3f1e7a52-0c2b-4d0e-9b8a-6a3c1f0e2d41'
            $d = Start-Dispatcher -VMs @(
                New-SeedVM -Name 'web-001' -Id $WebId -State 'Running' -Extra @{ Notes = $OwnerMark; MemoryStartup = 4294967296 }
                New-SeedVM -Name 'critical' -Id $CriticalId -State 'SavedCritical'
                New-SeedVM -Name 'dup' -Id '8c5a2d0e-9f1b-4c3d-8e5f-607182930415'
                New-SeedVM -Name 'dup' -Id '9d6b3e1f-0a2c-4d4e-9f60-718293041526'
            )
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'vm_get returns the VM''s record with its fields' {
            $r = Invoke-Op $d 'vm_get' @{ Id = $WebId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.Name | Should -BeExactly 'web-001'
            $r.Result.Id | Should -BeExactly $WebId
            $r.Result.State | Should -BeExactly 'Running'
            $r.Result.Notes | Should -BeExactly $OwnerMark
            $r.Result.MemoryStartup | Should -Be 4294967296
            $r.Result.Generation | Should -Be 2
            $r.Result.Path | Should -BeExactly 'C:\hvkube\vms\web-001'
            # ISO 8601 in UTC, whatever the host's time zone (the raw text: 7's ConvertFrom-Json
            # would make a DateTime of it).
            $r.Raw | Should -Match '"CreationTime":"2024-05-01T10:00:00\.0000000Z"'
        }

        It 'sends enums by name, not number, also past 32781 (SavedCritical, not 32788)' {
            $r = Invoke-Op $d 'vm_get' @{ Id = $CriticalId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            ($r.Result.State -is [string]) | Should -BeTrue -Because $r.Raw
            $r.Result.State | Should -BeExactly 'SavedCritical'
        }

        It 'vm_get of an Id no VM has answers the InvalidParameter record, without a vmState' {
            $r = Invoke-Op $d 'vm_get' @{ Id = $MissingId }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'InvalidParameter,*'
            $r.Error.category | Should -BeExactly 'InvalidArgument'
            $r.Error.type | Should -BeExactly 'Microsoft.HyperV.PowerShell.VirtualizationException'
            @($r.Error.hresults) | Should -Be @('0x80131500')
            $r.Error.target | Should -BeExactly $MissingId
            $r.Error.message | Should -Match $MissingId
            $r.Error.PSObject.Properties.Name | Should -Not -Contain 'vmState'
        }

        It 'vm_get looks the VM up by Id, never by listing every VM' {
            $null = Invoke-Op $d 'vm_get' @{ Id = $WebId }
            $call = Get-LastStubCall $d 'Get-VM'
            $call.bound.Id | Should -BeExactly $WebId
        }

        It 'vm_find finds a VM by name, ignoring case' -ForEach @(
            @{ Name = 'web-001' }
            @{ Name = 'WEB-001' }
        ) {
            $r = Invoke-Op $d 'vm_find' @{ Name = $Name }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"Items":\[\{'
            @($r.Result.Items) | Should -HaveCount 1
            $r.Result.Items[0].Id | Should -BeExactly $WebId
            $r.Raw | Should -Match '"Errors":\[\]'
        }

        It 'vm_find returns every VM of a name' {
            $r = Invoke-Op $d 'vm_find' @{ Name = 'dup' }
            $r.Ok | Should -BeTrue -Because $r.Raw
            @($r.Result.Items | ForEach-Object { $_.Name }) | Should -Be @('dup', 'dup')
        }

        It 'vm_find of a name no VM has: no items, and Get-VM''s record in Errors' {
            $r = Invoke-Op $d 'vm_find' @{ Name = 'nosuch' }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"Items":\[\]'
            @($r.Result.Errors) | Should -HaveCount 1
            $r.Result.Errors[0].fqid | Should -BeLike 'InvalidParameter,*'
            $r.Result.Errors[0].category | Should -BeExactly 'InvalidArgument'
            $r.Result.Errors[0].target | Should -BeExactly 'nosuch'
        }
    }

    Context 'checkpoints' {
        BeforeAll {
            $NoneId = 'a1b2c3d4-0e1f-4a2b-8c3d-4e5f6a7b8c90'
            $OneId = 'b2c3d4e5-1f2a-4b3c-9d4e-5f6a7b8c9d01'
            $TwoId = 'c3d4e5f6-2a3b-4c4d-8e5f-6a7b8c9d0e12'
            $OnlyCheckpoint = 'd4e5f6a7-3b4c-4d5e-9f6a-7b8c9d0e1f23'
            $OlderClean = 'e5f6a7b8-4c5d-4e6f-8a7b-8c9d0e1f2a34'
            $NewerClean = 'f6a7b8c9-5d6e-4f7a-9b8c-9d0e1f2a3b45'
            $d = Start-Dispatcher -VMs @(
                New-SeedVM -Name 'none' -Id $NoneId -State 'Running'
                New-SeedVM -Name 'one' -Id $OneId -State 'Off' -Checkpoints @(
                    New-SeedCheckpoint -Name 'clean' -Id $OnlyCheckpoint -CreationTime '2024-05-02T08:00:00Z' -State 'Running'
                )
                New-SeedVM -Name 'two' -Id $TwoId -State 'Running' -Checkpoints @(
                    New-SeedCheckpoint -Name 'clean' -Id $OlderClean -CreationTime '2024-05-02T08:00:00Z' -State 'Off'
                    New-SeedCheckpoint -Name 'clean' -Id $NewerClean -CreationTime '2024-05-03T08:00:00Z' -State 'Running'
                )
            )
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'checkpoint_list with no checkpoint returns an empty array' {
            $r = Invoke-Op $d 'checkpoint_list' @{ Id = $NoneId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"Items":\[\]'
            (Test-JsonList $r.Result.Items) | Should -BeTrue
            @($r.Result.Items) | Should -HaveCount 0
        }

        It 'checkpoint_list with one checkpoint still returns an array (the unrolling trap)' {
            $r = Invoke-Op $d 'checkpoint_list' @{ Id = $OneId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"Items":\[\{'
            (Test-JsonList $r.Result.Items) | Should -BeTrue
            @($r.Result.Items) | Should -HaveCount 1
            $r.Result.Items[0].Id | Should -BeExactly $OnlyCheckpoint
            $r.Result.Items[0].Name | Should -BeExactly 'clean'
            $r.Raw | Should -Match '"CreationTime":"2024-05-02T08:00:00\.0000000Z"'
        }

        It 'checkpoint_list with two checkpoints returns both, oldest first' {
            $r = Invoke-Op $d 'checkpoint_list' @{ Id = $TwoId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            @($r.Result.Items | ForEach-Object { $_.Id }) | Should -Be @($OlderClean, $NewerClean)
        }

        It 'checkpoint_restore by CheckpointId works when the VM has exactly one checkpoint' {
            $r = Invoke-Op $d 'checkpoint_restore' @{ CheckpointId = $OnlyCheckpoint }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"result":null'
            (Get-LastStubCall $d 'Restore-VMSnapshot').bound.VMSnapshot | Should -BeExactly $OnlyCheckpoint
            # Taken while the VM ran: applying it leaves the VM Saved, ready to resume.
            (Invoke-Op $d 'vm_get' @{ Id = $OneId }).Result.State | Should -BeExactly 'Saved'
        }

        It 'checkpoint_restore applies the checkpoint named by its Id among several of one name' {
            $r = Invoke-Op $d 'checkpoint_restore' @{ CheckpointId = $OlderClean }
            $r.Ok | Should -BeTrue -Because $r.Raw
            (Get-LastStubCall $d 'Restore-VMSnapshot').bound.VMSnapshot | Should -BeExactly $OlderClean
            (Invoke-Op $d 'vm_get' @{ Id = $TwoId }).Result.State | Should -BeExactly 'Off'
        }

        It 'checkpoint_restore of a checkpoint that is not there answers ObjectNotFound, about the checkpoint' {
            $missing = '0f1e2d3c-4b5a-4968-8776-655443322110'
            $r = Invoke-Op $d 'checkpoint_restore' @{ CheckpointId = $missing }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'ObjectNotFound,*'
            $r.Error.category | Should -BeExactly 'ObjectNotFound'
            $r.Error.target | Should -BeExactly $missing
            $r.Error.PSObject.Properties.Name | Should -Not -Contain 'vmState'
        }

        It 'checkpoint_new takes a checkpoint and returns it; the list then has it' {
            $r = Invoke-Op $d 'checkpoint_new' @{ Id = $NoneId; Checkpoint = 'clean' }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.Name | Should -BeExactly 'clean'
            $r.Result.Id | Should -Match '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            $r.Raw | Should -Match '"CreationTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"'
            $list = Invoke-Op $d 'checkpoint_list' @{ Id = $NoneId }
            $list.Raw | Should -Match '"Items":\[\{'
            @($list.Result.Items | ForEach-Object { $_.Id }) | Should -Be @($r.Result.Id)
        }

        It 'checkpoint_remove removes that checkpoint only' {
            $r = Invoke-Op $d 'checkpoint_remove' @{ CheckpointId = $NewerClean }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $list = Invoke-Op $d 'checkpoint_list' @{ Id = $TwoId }
            $list.Raw | Should -Match '"Items":\[\{'
            @($list.Result.Items | ForEach-Object { $_.Id }) | Should -Be @($OlderClean)
        }

        It 'checkpoint_list of a VM that is not there answers Get-VM''s InvalidParameter' {
            $r = Invoke-Op $d 'checkpoint_list' @{ Id = '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d' }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'InvalidParameter,*'
        }
    }

    Context 'power operations' {
        BeforeAll {
            $LifeId = '2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e'
            $NoMemoryId = '3c4d5e6f-7a8b-4c9d-8e0f-2a3b4c5d6e7f'
            $d = Start-Dispatcher -VMs @(
                New-SeedVM -Name 'life' -Id $LifeId -State 'Off'
                New-SeedVM -Name 'nomemory' -Id $NoMemoryId -State 'Off' -Extra @{
                    StartFailure = @{
                        ErrorId      = 'OperationFailed'
                        Category     = 'NotSpecified'
                        Message      = '''nomemory'' could not initialize memory: Ran out of memory.'
                        InnerHResult = '0x8007000E'
                    }
                }
            )
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'starts, pauses, resumes, saves, starts, shuts down, starts and turns off a VM' {
            $steps = @(
                @('vm_start', 'Running'), @('vm_pause', 'Paused'), @('vm_unpause', 'Running'),
                @('vm_save', 'Saved'), @('vm_start', 'Running'), @('vm_shutdown', 'Off'),
                @('vm_start', 'Running'), @('vm_turn_off', 'Off')
            )
            foreach ($step in $steps) {
                $r = Invoke-Op $d $step[0] @{ Id = $LifeId }
                $r.Ok | Should -BeTrue -Because ('{0}: {1}' -f $step[0], $r.Raw)
                $r.Raw | Should -Match '"result":null'
                (Invoke-Op $d 'vm_get' @{ Id = $LifeId }).Result.State | Should -BeExactly $step[1] -Because $step[0]
            }
        }

        It 'shuts down with Stop-VM -Force, and turns off with -TurnOff' {
            $null = Invoke-Op $d 'vm_start' @{ Id = $LifeId }
            $null = Invoke-Op $d 'vm_shutdown' @{ Id = $LifeId }
            $call = Get-LastStubCall $d 'Stop-VM'
            $call.bound.Force | Should -BeTrue
            $call.bound.PSObject.Properties.Name | Should -Not -Contain 'TurnOff'
            $null = Invoke-Op $d 'vm_turn_off' @{ Id = $LifeId }
            (Get-LastStubCall $d 'Stop-VM').bound.TurnOff | Should -BeTrue
        }

        It 'a failed start answers the cmdlet''s record with the HRESULT chain and the VM''s state by name' {
            $r = Invoke-Op $d 'vm_start' @{ Id = $NoMemoryId }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'OperationFailed,*'
            $r.Error.category | Should -BeExactly 'NotSpecified'
            $r.Error.type | Should -BeExactly 'Microsoft.HyperV.PowerShell.VirtualizationException'
            @($r.Error.hresults) | Should -Be @('0x80131500', '0x8007000E')
            $r.Error.target | Should -BeExactly 'nomemory'
            ($r.Error.vmState -is [string]) | Should -BeTrue -Because $r.Raw
            $r.Error.vmState | Should -BeExactly 'Off'
        }

        It 'addresses VMs by Id: no parameterless Get-VM for a single VM''s operation' {
            $bare = @(Get-StubCalls $d 'Get-VM' | Where-Object { @($_.bound.PSObject.Properties.Name) -notcontains 'Id' })
            $bare | Should -HaveCount 0
        }

        It 'vm_remove removes the VM (Remove-VM -Force, no prompt in a non-interactive session)' {
            $r = Invoke-Op $d 'vm_remove' @{ Id = $LifeId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            (Get-LastStubCall $d 'Remove-VM').bound.Force | Should -BeTrue
            $gone = Invoke-Op $d 'vm_get' @{ Id = $LifeId }
            $gone.Ok | Should -BeFalse
            $gone.Error.fqid | Should -BeLike 'InvalidParameter,*'
        }
    }

    Context 'creating and configuring VMs and disks' {
        BeforeAll {
            $VmFolder = Join-Path $TestDrive 'vms'
            $Template = Join-Path $TestDrive 'template.vhdx'
            [System.IO.File]::WriteAllText($Template, 'template')
            $DiskFolder = Join-Path $VmFolder 'web-001'
            $Disk = Join-Path $DiskFolder 'web-001.vhdx'
            $d = Start-Dispatcher -VMs @()
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'disk_new_diff makes the folder and a differencing disk on the template' {
            $r = Invoke-Op $d 'disk_new_diff' @{ Path = $Disk; ParentPath = $Template; Folder = $DiskFolder }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $call = Get-LastStubCall $d 'New-VHD'
            $call.bound.Path | Should -BeExactly $Disk
            $call.bound.ParentPath | Should -BeExactly $Template
            $call.bound.Differencing | Should -BeTrue
            (Invoke-Op $d 'disk_exists' @{ Path = $Disk }).Result.Exists | Should -BeTrue
        }

        It 'disk_new_diff where a file already exists answers New-VHD''s record with 0x80070050' {
            $r = Invoke-Op $d 'disk_new_diff' @{ Path = $Disk; ParentPath = $Template; Folder = $DiskFolder }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'OperationFailed,*'
            @($r.Error.hresults) | Should -Contain '0x80070050'
        }

        It 'disk_exists of a file that is not there is false' {
            $r = Invoke-Op $d 'disk_exists' @{ Path = (Join-Path $TestDrive 'nosuch.vhdx') }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.Exists | Should -BeFalse
        }

        It 'vm_new makes a generation 2 VM on the disk and returns its record' {
            $r = Invoke-Op $d 'vm_new' @{ Name = 'web-001'; DiskPath = $Disk; MemoryBytes = 4294967296; Path = $VmFolder }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.Name | Should -BeExactly 'web-001'
            $r.Result.State | Should -BeExactly 'Off'
            $r.Result.Generation | Should -Be 2
            $r.Result.MemoryStartup | Should -Be 4294967296
            $call = Get-LastStubCall $d 'New-VM'
            $call.bound.VHDPath | Should -BeExactly $Disk
            $call.bound.Path | Should -BeExactly $VmFolder
            $call.bound.Generation | Should -Be 2
            $call.bound.PSObject.Properties.Name | Should -Not -Contain 'SwitchName'
        }

        It 'vm_new_on_switch connects the VM to the switch' {
            $r = Invoke-Op $d 'vm_new_on_switch' @{ Name = 'web-002'; DiskPath = $Disk; MemoryBytes = 2147483648; Path = $VmFolder; SwitchName = 'Default Switch' }
            $r.Ok | Should -BeTrue -Because $r.Raw
            (Get-LastStubCall $d 'New-VM').bound.SwitchName | Should -BeExactly 'Default Switch'
        }

        It 'vm_configure sets the owner mark, CPUs, static memory, standard checkpoints and the stop action' {
            $id = (Invoke-Op $d 'vm_find' @{ Name = 'web-001' }).Result.Items[0].Id
            $r = Invoke-Op $d 'vm_configure' @{ Id = $id; Notes = $OwnerMark; Cpus = 2; StopAction = 'Save' }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $call = Get-LastStubCall $d 'Set-VM'
            $call.bound.VM | Should -BeExactly $id
            $call.bound.Notes | Should -BeExactly $OwnerMark
            $call.bound.ProcessorCount | Should -Be 2
            $call.bound.StaticMemory | Should -BeTrue
            $call.bound.AutomaticCheckpointsEnabled | Should -BeFalse
            $call.bound.CheckpointType | Should -BeExactly 'Standard'
            $call.bound.AutomaticStopAction | Should -BeExactly 'Save'
            (Invoke-Op $d 'vm_get' @{ Id = $id }).Result.Notes | Should -BeExactly $OwnerMark
        }

        It 'vm_configure with a stop action Hyper-V does not have fails' {
            $id = (Invoke-Op $d 'vm_find' @{ Name = 'web-001' }).Result.Items[0].Id
            $r = Invoke-Op $d 'vm_configure' @{ Id = $id; Notes = $OwnerMark; Cpus = 2; StopAction = 'Hibernate' }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.category | Should -BeExactly 'InvalidArgument'
        }

        It 'vm_dynamic_memory, vm_enhanced_session and vm_add_gpu call their cmdlets' {
            $id = (Invoke-Op $d 'vm_find' @{ Name = 'web-001' }).Result.Items[0].Id
            (Invoke-Op $d 'vm_dynamic_memory' @{ Id = $id }).Ok | Should -BeTrue
            (Get-LastStubCall $d 'Set-VM').bound.DynamicMemory | Should -BeTrue
            (Invoke-Op $d 'vm_enhanced_session' @{ Id = $id }).Ok | Should -BeTrue
            (Get-LastStubCall $d 'Set-VM').bound.EnhancedSessionTransportType | Should -BeExactly 'HvSocket'
            (Invoke-Op $d 'vm_add_gpu' @{ Id = $id }).Ok | Should -BeTrue
            (Get-LastStubCall $d 'Add-VMGpuPartitionAdapter').bound.VM | Should -BeExactly $id
        }

        It 'disk_remove deletes the disk; removing it again fails' {
            (Invoke-Op $d 'disk_remove' @{ Path = $Disk }).Ok | Should -BeTrue
            (Invoke-Op $d 'disk_exists' @{ Path = $Disk }).Result.Exists | Should -BeFalse
            (Invoke-Op $d 'disk_remove' @{ Path = $Disk }).Ok | Should -BeFalse
        }
    }

    Context 'host, network and integration services' {
        BeforeAll {
            $NetId = '4d5e6f7a-8b9c-4d0e-9f1a-3b4c5d6e7f80'
            $OneIpId = '5e6f7a8b-9c0d-4e1f-8a2b-4c5d6e7f8091'
            $OffId = '6f7a8b9c-0d1e-4f2a-9b3c-5d6e7f8091a2'
            $d = Start-Dispatcher -HostSettings @{
                LogicalProcessorCount = 16
                MemoryCapacity        = 68719476736
                FreePhysicalMemoryKB  = 33554432
                VirtualHardDiskPath   = 'D:\Hyper-V\Disks'
                VirtualMachinePath    = 'D:\Hyper-V'
            } -VMs @(
                New-SeedVM -Name 'net' -Id $NetId -State 'Running' -Extra @{
                    Adapters = @(
                        @{ Name = 'Network Adapter'; IPAddresses = @('10.0.0.5', 'fe80::1') }
                        @{ Name = 'Second'; IPAddresses = @() }
                    )
                }
                New-SeedVM -Name 'oneip' -Id $OneIpId -State 'Running' -Extra @{
                    Adapters = @(@{ Name = 'Network Adapter'; IPAddresses = @('10.0.0.9') })
                    HeartbeatStatus = 'NoContact'
                }
                New-SeedVM -Name 'off' -Id $OffId -State 'Off' -Extra @{ Adapters = @(@{ Name = 'Network Adapter'; IPAddresses = @() }) }
            )
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'host_info reports the host''s memory, processors and folders' {
            $r = Invoke-Op $d 'host_info'
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.TotalMemoryBytes | Should -Be 68719476736
            $r.Result.FreeMemoryKB | Should -Be 33554432
            $r.Result.LogicalProcessorCount | Should -Be 16
            $r.Result.VirtualHardDiskPath | Should -BeExactly 'D:\Hyper-V\Disks'
            $r.Result.VirtualMachinePath | Should -BeExactly 'D:\Hyper-V'
        }

        It 'vm_ip flattens every adapter''s addresses, as text' {
            $r = Invoke-Op $d 'vm_ip' @{ Id = $NetId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            @($r.Result.Addresses) | Should -Be @('10.0.0.5', 'fe80::1')
            $r.Result.State | Should -BeExactly 'Running'
        }

        It 'vm_ip with one address still returns an array' {
            $r = Invoke-Op $d 'vm_ip' @{ Id = $OneIpId }
            $r.Raw | Should -Match '"Addresses":\["10\.0\.0\.9"\]'
        }

        It 'vm_ip with no address returns an empty array' {
            $r = Invoke-Op $d 'vm_ip' @{ Id = $OffId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Raw | Should -Match '"Addresses":\[\]'
            $r.Result.State | Should -BeExactly 'Off'
        }

        It 'vm_heartbeat lists every integration service with its id, and statuses by name' {
            $r = Invoke-Op $d 'vm_heartbeat' @{ Id = $NetId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.State | Should -BeExactly 'Running'
            @($r.Result.Items) | Should -HaveCount 6
            $heartbeat = @($r.Result.Items | Where-Object { $_.Id.ToUpperInvariant().EndsWith($HeartbeatServiceId) })
            $heartbeat | Should -HaveCount 1
            $heartbeat[0].Enabled | Should -BeTrue
            $heartbeat[0].PrimaryStatus | Should -BeExactly 'Ok'
            $r.Raw | Should -Not -Match '"PrimaryStatus":\d'
        }

        It 'vm_heartbeat sends another status by name too (NoContact, not 12)' {
            $r = Invoke-Op $d 'vm_heartbeat' @{ Id = $OneIpId }
            $heartbeat = @($r.Result.Items | Where-Object { $_.Id.ToUpperInvariant().EndsWith($HeartbeatServiceId) })
            $heartbeat[0].PrimaryStatus | Should -BeExactly 'NoContact'
        }

        It 'vm_heartbeat of a VM that is off: statuses empty' {
            $r = Invoke-Op $d 'vm_heartbeat' @{ Id = $OffId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.State | Should -BeExactly 'Off'
            @($r.Result.Items | ForEach-Object { $_.PrimaryStatus }) | Should -Be @('', '', '', '', '', '')
        }
    }

    Context 'screen, keyboard and mouse (WMI, through the CIM stand-in)' {
        BeforeAll {
            $ScreenId = '7a8b9c0d-1e2f-4a3b-8c4d-6e7f8091a2b3'
            $AsleepId = '8b9c0d1e-2f3a-4b4c-9d5e-7f8091a2b3c4'
            $JobsId = '9c0d1e2f-3a4b-4c5d-8e6f-8091a2b3c4d5'
            $d = Start-Dispatcher -VMs @(
                New-SeedVM -Name 'screen' -Id $ScreenId -State 'Running' -Extra @{
                    Wmi = @{ Resolution = @(1280, 800); Kvp = @{ NetworkAddressIPv4 = '10.0.0.5'; FullyQualifiedDomainName = 'screen' } }
                }
                New-SeedVM -Name 'asleep' -Id $AsleepId -State 'Off'
                New-SeedVM -Name 'jobs' -Id $JobsId -State 'Running' -Extra @{ Wmi = @{ Jobs = $true; Kvp = @{ NetworkAddressIPv4 = '10.0.0.6' } } }
            )
        }
        AfterAll { $null = Stop-Dispatcher $d }

        It 'vm_type_text types <Label> unchanged' -ForEach @(
            @{ Label = 'a date-like text (7''s ConvertFrom-Json would make a DateTime of it)'; Text = '2024-01-01T00:00:00' }
            @{ Label = 'plain text'; Text = 'notepad' }
            @{ Label = 'quotes, dollars and backticks (data, never code)'; Text = 'it''s "$(Get-Date)" `n; exit' }
        ) {
            $r = Invoke-Op $d 'vm_type_text' @{ Id = $ScreenId; TextBase64 = (ConvertTo-Base64Ascii $Text) }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.ReturnValue | Should -Be 0
            $r.Result.Job | Should -BeExactly ''
            $call = Get-LastStubCall $d 'Invoke-CimMethod'
            $call.class | Should -BeExactly 'Msvm_Keyboard'
            $call.method | Should -BeExactly 'TypeText'
            $call.vmId | Should -BeExactly $ScreenId.ToUpperInvariant()
            $call.arguments.asciiText.type | Should -BeExactly 'System.String'
            $typed = [System.Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($call.arguments.asciiText.base64))
            $typed | Should -BeExactly $Text
        }

        It 'vm_type_text leaves the date-like text a string all the way (the raw log line)' {
            $null = Invoke-Op $d 'vm_type_text' @{ Id = $ScreenId; TextBase64 = (ConvertTo-Base64Ascii '2024-01-01T00:00:00') }
            (Get-LastStubCall $d 'Invoke-CimMethod').Raw | Should -Match '"asciiText":\{"value":"2024-01-01T00:00:00","type":"System.String"'
        }

        It 'vm_type_key sends the key code as a uint32' {
            $r = Invoke-Op $d 'vm_type_key' @{ Id = $ScreenId; KeyCode = 13 }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $call = Get-LastStubCall $d 'Invoke-CimMethod'
            $call.method | Should -BeExactly 'TypeKey'
            $call.arguments.keyCode.value | Should -Be 13
            $call.arguments.keyCode.type | Should -BeExactly 'System.UInt32'
        }

        It 'vm_ctrl_alt_del calls TypeCtrlAltDel' {
            (Invoke-Op $d 'vm_ctrl_alt_del' @{ Id = $ScreenId }).Ok | Should -BeTrue
            (Get-LastStubCall $d 'Invoke-CimMethod').method | Should -BeExactly 'TypeCtrlAltDel'
        }

        It 'vm_mouse_move and vm_mouse_click drive the synthetic mouse' {
            (Invoke-Op $d 'vm_mouse_move' @{ Id = $ScreenId; X = 640; Y = 400 }).Ok | Should -BeTrue
            $move = Get-LastStubCall $d 'Invoke-CimMethod'
            $move.class | Should -BeExactly 'Msvm_SyntheticMouse'
            $move.method | Should -BeExactly 'SetAbsolutePosition'
            $move.arguments.horizontalPosition.value | Should -Be 640
            $move.arguments.verticalPosition.value | Should -Be 400
            (Invoke-Op $d 'vm_mouse_click' @{ Id = $ScreenId; Button = 2 }).Ok | Should -BeTrue
            $click = Get-LastStubCall $d 'Invoke-CimMethod'
            $click.method | Should -BeExactly 'ClickButton'
            $click.arguments.buttonIndex.value | Should -Be 2
        }

        It 'vm_video_head reads the current resolution' {
            $r = Invoke-Op $d 'vm_video_head' @{ Id = $ScreenId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.Width | Should -Be 1280
            $r.Result.Height | Should -Be 800
        }

        It 'vm_thumbnail asks for the VM''s own settings and returns the image in base64' {
            $r = Invoke-Op $d 'vm_thumbnail' @{ Id = $ScreenId; Width = 64; Height = 48 }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.ReturnValue | Should -Be 0
            [Convert]::FromBase64String($r.Result.Data).Length | Should -Be (64 * 48 * 2)
            $call = Get-LastStubCall $d 'Invoke-CimMethod'
            $call.method | Should -BeExactly 'GetVirtualSystemThumbnailImage'
            $call.arguments.TargetSystem.value | Should -BeExactly ('Microsoft:' + $ScreenId.ToUpperInvariant())
            $call.arguments.WidthPixels.type | Should -BeExactly 'System.UInt16'
        }

        It 'vm_kvp returns the guest''s items as XML texts, in an array even for one' {
            $r = Invoke-Op $d 'vm_kvp' @{ Id = $ScreenId }
            $r.Ok | Should -BeTrue -Because $r.Raw
            @($r.Result.Items) | Should -HaveCount 2
            @($r.Result.Items | Where-Object { $_ -match 'NetworkAddressIPv4' -and $_ -match '10\.0\.0\.5' }) | Should -HaveCount 1
            $one = Invoke-Op $d 'vm_kvp' @{ Id = $JobsId }
            # 5.1's ConvertTo-Json writes < as \u003c.
            $one.Raw | Should -Match '"Items":\["(<|\\u003c)INSTANCE'
        }

        It 'the devices of a VM that is off: HvkubeInvalidState' {
            $r = Invoke-Op $d 'vm_type_text' @{ Id = $AsleepId; TextBase64 = (ConvertTo-Base64Ascii 'x') }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'HvkubeInvalidState,*'
            $r.Error.category | Should -BeExactly 'InvalidOperation'
        }

        It 'the devices of a VM that is not there: HvkubeVMNotFound' {
            $missing = 'ad0e1f2a-3b4c-4d5e-9f6a-7b8c9d0e1f2a'
            $r = Invoke-Op $d 'vm_type_key' @{ Id = $missing; KeyCode = 13 }
            $r.Ok | Should -BeFalse -Because $r.Raw
            $r.Error.fqid | Should -BeLike 'HvkubeVMNotFound,*'
            $r.Error.category | Should -BeExactly 'ObjectNotFound'
            $r.Error.target | Should -BeExactly $missing
        }

        It 'a method that starts a job answers 4096 with the job, and wmi_job reads it' {
            $r = Invoke-Op $d 'vm_type_key' @{ Id = $JobsId; KeyCode = 13 }
            $r.Ok | Should -BeTrue -Because $r.Raw
            $r.Result.ReturnValue | Should -Be 4096
            $r.Result.Job | Should -Match '^Microsoft:'
            $job = Invoke-Op $d 'wmi_job' @{ InstanceId = $r.Result.Job }
            $job.Ok | Should -BeTrue -Because $job.Raw
            $job.Result.JobState | Should -Be 7
            $job.Result.ErrorCode | Should -Be 0
            $job.Result.ErrorDescription | Should -BeExactly ''
        }
    }
}
