# hvkube Hyper-V dispatcher.
#
# Started once per session by hvkube (powershell.exe -File dispatcher.ps1) and
# kept running. It reads one request per line from stdin:
#
#     HVKUBE-REQ {"id":"<nonce>","op":"<operation>","data":{...}}
#
# runs the operation named in the fixed allow-list $Ops below, with the
# request's data splatted as the operation's parameters, and writes one line:
#
#     HVKUBE-RES <nonce> {"ok":true,"result":...}
#     HVKUBE-RES <nonce> {"ok":false,"error":{"message","fqid","category","type","hresults",...}}
#
# Request values are only ever data: they are bound to typed parameters and
# passed to cmdlets as arguments. Nothing from a request is parsed as code.
# Enums are stringified here ("$($vm.State)") so Python maps them by name.

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$WarningPreference = 'SilentlyContinue'
$InformationPreference = 'SilentlyContinue'
Set-StrictMode -Version 2.0

$Utf8 = New-Object System.Text.UTF8Encoding $false
[Console]::InputEncoding = $Utf8
[Console]::OutputEncoding = $Utf8
$Stdout = New-Object System.IO.StreamWriter ([Console]::OpenStandardOutput()), $Utf8
$Stdout.AutoFlush = $true
$Stdout.NewLine = "`n"

$Namespace = 'root\virtualization\v2'
$ModuleError = $null
try {
    Import-Module Hyper-V -ErrorAction Stop
} catch {
    $ModuleError = $_.Exception.Message
}

# -- helpers -----------------------------------------------------------------------------------
# No decisions here (which checkpoint, how many, whether to wait or retry): each operation is one
# cmdlet or WMI call with typed parameters, its result projected to fixed fields. Python decides.

# The VM an operation looked up: its state goes into the error record, so that Python can tell a
# failed resume from Saved from a failed cold boot.
$script:OpVM = $null

function Stop-Hv {
    # Raise an error record with a fixed id the Python side classifies.
    [CmdletBinding()]
    param([string]$Id, [System.Management.Automation.ErrorCategory]$Category, [string]$Message, $Target)
    $exception = New-Object System.InvalidOperationException $Message
    $record = New-Object System.Management.Automation.ErrorRecord $exception, $Id, $Category, $Target
    $PSCmdlet.ThrowTerminatingError($record)
}

function Get-HvVM {
    # The VM with this Id: never a name lookup over every VM (one broken VM fails that listing).
    param([guid]$Id)
    $vm = Hyper-V\Get-VM -Id $Id
    $script:OpVM = $vm
    return $vm
}

function ConvertTo-HvRecord {
    param($VM)
    return [ordered]@{
        Name          = [string]$VM.Name
        Id            = [string]$VM.Id
        State         = "$($VM.State)"
        Notes         = [string]$VM.Notes
        MemoryStartup = [long]$VM.MemoryStartup
        CreationTime  = $VM.CreationTime.ToUniversalTime().ToString('o')
        Generation    = [int]$VM.Generation
        Path          = [string]$VM.Path
    }
}

function ConvertTo-HvCheckpoint {
    param($Snapshot)
    return [ordered]@{
        Id           = [string]$Snapshot.Id
        Name         = [string]$Snapshot.Name
        CreationTime = $Snapshot.CreationTime.ToUniversalTime().ToString('o')
    }
}

function Get-HvDevice {
    # One of the VM's WMI devices (keyboard, mouse, video head, KVP), found from its Id.
    param([guid]$Id, [string]$ClassName)
    # The filter is built from a [guid]: hex digits and dashes only.
    $cs = Get-CimInstance -Namespace $Namespace -ClassName Msvm_ComputerSystem -Filter ("Name='{0}'" -f $Id.ToString())
    if ($null -eq $cs) {
        Stop-Hv -Id 'HvkubeVMNotFound' -Category ObjectNotFound -Target $Id `
            -Message ("WMI has no Msvm_ComputerSystem with id {0}" -f $Id)
    }
    $device = Get-CimAssociatedInstance -InputObject $cs -ResultClassName $ClassName | Select-Object -First 1
    if ($null -eq $device) {
        Stop-Hv -Id 'HvkubeInvalidState' -Category InvalidOperation -Target $Id `
            -Message ("the VM has no {0} now (is it running?)" -f $ClassName)
    }
    return $device
}

function ConvertTo-HvWmiResult {
    # A WMI method's outcome as data: Python waits for a job (4096) and maps the codes.
    param($Result, [string]$Data = '')
    # Only methods that can start a job have a Job output: under strict mode, reading a property
    # that is not there throws, so look it up by name.
    $job = ''
    $jobProperty = $Result.PSObject.Properties['Job']
    if ($null -ne $jobProperty -and $null -ne $jobProperty.Value) { $job = [string]$jobProperty.Value.InstanceID }
    return [ordered]@{ ReturnValue = [int]$Result.ReturnValue; Job = $job; Data = $Data }
}

# -- operations: the allow-list ----------------------------------------------------------------
# Each entry takes named parameters only; the request's data is splatted into them. Collections
# are wrapped at the call site (@(...)) and returned inside an object, never bare: a function's
# output is unrolled, and one item or none would reach the caller as a single object or $null.

$Ops = @{
    'ping' = {
        return [ordered]@{ pong = $true; ps = $PSVersionTable.PSVersion.ToString() }
    }

    'host_info' = {
        $vmhost = Hyper-V\Get-VMHost
        $os = Get-CimInstance -ClassName Win32_OperatingSystem
        return [ordered]@{
            TotalMemoryBytes      = [long]$vmhost.MemoryCapacity
            FreeMemoryKB          = [long]$os.FreePhysicalMemory
            LogicalProcessorCount = [int]$vmhost.LogicalProcessorCount
            VirtualHardDiskPath   = [string]$vmhost.VirtualHardDiskPath
            VirtualMachinePath    = [string]$vmhost.VirtualMachinePath
        }
    }

    'vm_list' = {
        # Every VM the host can read; the ones it cannot (a VM whose files are gone) are
        # reported beside them instead of failing the whole listing.
        $failures = @()
        $vms = @(Hyper-V\Get-VM -ErrorAction SilentlyContinue -ErrorVariable failures)
        $items = @($vms | ForEach-Object { ConvertTo-HvRecord -VM $_ })
        $errors = @($failures | ForEach-Object { Get-ErrorPayload -Record $_ })
        return [ordered]@{ Items = $items; Errors = $errors }
    }

    'vm_find' = {
        # VMs with this name (Hyper-V compares ignoring case). hvkube's names hold no wildcard
        # characters, so -Name matches exactly; a name with no VM is an empty list.
        param([string]$Name)
        $failures = @()
        $vms = @(Hyper-V\Get-VM -Name $Name -ErrorAction SilentlyContinue -ErrorVariable failures)
        $items = @($vms | ForEach-Object { ConvertTo-HvRecord -VM $_ })
        $errors = @($failures | ForEach-Object { Get-ErrorPayload -Record $_ })
        return [ordered]@{ Items = $items; Errors = $errors }
    }

    'vm_get' = {
        param([guid]$Id)
        return ConvertTo-HvRecord -VM (Get-HvVM -Id $Id)
    }

    'disk_new_diff' = {
        param([string]$Path, [string]$ParentPath, [string]$Folder)
        New-Item -ItemType Directory -Path $Folder -Force | Out-Null
        Hyper-V\New-VHD -Path $Path -ParentPath $ParentPath -Differencing | Out-Null
        return $null
    }

    'disk_exists' = {
        param([string]$Path)
        return [ordered]@{ Exists = [bool](Test-Path -LiteralPath $Path -PathType Leaf) }
    }

    'disk_remove' = {
        param([string]$Path)
        Remove-Item -LiteralPath $Path -Force
        return $null
    }

    'vm_new' = {
        param([string]$Name, [string]$DiskPath, [long]$MemoryBytes, [string]$Path)
        $vm = Hyper-V\New-VM -Name $Name -Generation 2 -MemoryStartupBytes $MemoryBytes -VHDPath $DiskPath -Path $Path
        return ConvertTo-HvRecord -VM $vm
    }

    'vm_new_on_switch' = {
        param([string]$Name, [string]$DiskPath, [long]$MemoryBytes, [string]$Path, [string]$SwitchName)
        $vm = Hyper-V\New-VM -Name $Name -Generation 2 -MemoryStartupBytes $MemoryBytes -VHDPath $DiskPath `
            -Path $Path -SwitchName $SwitchName
        return ConvertTo-HvRecord -VM $vm
    }

    'vm_configure' = {
        # Ownership mark, CPUs, static memory, standard checkpoints, no automatic checkpoints.
        param([guid]$Id, [string]$Notes, [int]$Cpus, [string]$StopAction)
        Hyper-V\Set-VM -VM (Get-HvVM -Id $Id) -Notes $Notes -ProcessorCount $Cpus -StaticMemory `
            -AutomaticCheckpointsEnabled $false -CheckpointType Standard -AutomaticStopAction $StopAction
        return $null
    }

    'vm_dynamic_memory' = {
        param([guid]$Id)
        Hyper-V\Set-VM -VM (Get-HvVM -Id $Id) -DynamicMemory
        return $null
    }

    'vm_enhanced_session' = {
        param([guid]$Id)
        Hyper-V\Set-VM -VM (Get-HvVM -Id $Id) -EnhancedSessionTransportType HvSocket
        return $null
    }

    'vm_add_gpu' = {
        param([guid]$Id)
        Hyper-V\Add-VMGpuPartitionAdapter -VM (Get-HvVM -Id $Id)
        return $null
    }

    'vm_start' = {
        param([guid]$Id)
        Hyper-V\Start-VM -VM (Get-HvVM -Id $Id)
        return $null
    }

    'vm_save' = {
        param([guid]$Id)
        Hyper-V\Save-VM -VM (Get-HvVM -Id $Id)
        return $null
    }

    'vm_pause' = {
        param([guid]$Id)
        Hyper-V\Suspend-VM -VM (Get-HvVM -Id $Id)
        return $null
    }

    'vm_unpause' = {
        param([guid]$Id)
        Hyper-V\Resume-VM -VM (Get-HvVM -Id $Id)
        return $null
    }

    'vm_shutdown' = {
        param([guid]$Id)
        Hyper-V\Stop-VM -VM (Get-HvVM -Id $Id) -Force -Confirm:$false
        return $null
    }

    'vm_turn_off' = {
        param([guid]$Id)
        Hyper-V\Stop-VM -VM (Get-HvVM -Id $Id) -TurnOff -Force -Confirm:$false
        return $null
    }

    'vm_remove' = {
        param([guid]$Id)
        Hyper-V\Remove-VM -VM (Get-HvVM -Id $Id) -Force -Confirm:$false
        return $null
    }

    'checkpoint_list' = {
        param([guid]$Id)
        $snapshots = @(Hyper-V\Get-VMSnapshot -VM (Get-HvVM -Id $Id))
        return [ordered]@{ Items = @($snapshots | ForEach-Object { ConvertTo-HvCheckpoint -Snapshot $_ }) }
    }

    'checkpoint_new' = {
        param([guid]$Id, [string]$Checkpoint)
        $snapshot = Hyper-V\Checkpoint-VM -VM (Get-HvVM -Id $Id) -SnapshotName $Checkpoint -Passthru -Confirm:$false
        return ConvertTo-HvCheckpoint -Snapshot $snapshot
    }

    'checkpoint_restore' = {
        param([guid]$CheckpointId)
        Hyper-V\Restore-VMSnapshot -VMSnapshot (Hyper-V\Get-VMSnapshot -Id $CheckpointId) -Confirm:$false
        return $null
    }

    'checkpoint_remove' = {
        # Remove-VMSnapshot merges differencing checkpoint disks; never delete .avhdx by hand.
        param([guid]$CheckpointId)
        Hyper-V\Remove-VMSnapshot -VMSnapshot (Hyper-V\Get-VMSnapshot -Id $CheckpointId) -Confirm:$false
        return $null
    }

    'vm_ip' = {
        param([guid]$Id)
        $vm = Get-HvVM -Id $Id
        $adapters = @(Hyper-V\Get-VMNetworkAdapter -VM $vm)
        $addresses = @($adapters | ForEach-Object { @($_.IPAddresses) } | ForEach-Object { [string]$_ })
        return [ordered]@{ State = "$($vm.State)"; Addresses = $addresses }
    }

    'vm_kvp' = {
        # The guest's own report through the KVP exchange (intrinsic items), as raw XML texts.
        param([guid]$Id)
        $component = Get-HvDevice -Id $Id -ClassName Msvm_KvpExchangeComponent
        $texts = @(@($component.GuestIntrinsicExchangeItems) | Where-Object { $null -ne $_ } | ForEach-Object { [string]$_ })
        return [ordered]@{ Items = $texts }
    }

    'vm_heartbeat' = {
        # Every integration service with its id: their names are localised, Python matches the id.
        param([guid]$Id)
        $vm = Get-HvVM -Id $Id
        $services = @(Hyper-V\Get-VMIntegrationService -VM $vm)
        $items = @($services | ForEach-Object {
            [ordered]@{ Id = [string]$_.Id; Enabled = [bool]$_.Enabled; PrimaryStatus = "$($_.PrimaryOperationalStatus)" }
        })
        return [ordered]@{ State = "$($vm.State)"; Items = $items }
    }

    'vm_video_head' = {
        param([guid]$Id)
        $head = Get-HvDevice -Id $Id -ClassName Msvm_VideoHead
        return [ordered]@{
            Width  = [int]$head.CurrentHorizontalResolution
            Height = [int]$head.CurrentVerticalResolution
        }
    }

    'vm_thumbnail' = {
        param([guid]$Id, [int]$Width, [int]$Height)
        $cs = Get-CimInstance -Namespace $Namespace -ClassName Msvm_ComputerSystem -Filter ("Name='{0}'" -f $Id.ToString())
        $settings = @(Get-CimAssociatedInstance -InputObject $cs -ResultClassName Msvm_VirtualSystemSettingData |
            Where-Object { $_.VirtualSystemType -eq 'Microsoft:Hyper-V:System:Realized' })
        $service = Get-CimInstance -Namespace $Namespace -ClassName Msvm_VirtualSystemManagementService
        $result = Invoke-CimMethod -InputObject $service -MethodName GetVirtualSystemThumbnailImage -Arguments @{
            TargetSystem = $settings[0]; WidthPixels = [uint16]$Width; HeightPixels = [uint16]$Height
        }
        # A failed call may have no ImageData: read it by name, as strict mode needs.
        $data = ''
        $image = $result.PSObject.Properties['ImageData']
        if ($null -ne $image -and $null -ne $image.Value) { $data = [Convert]::ToBase64String([byte[]]$image.Value) }
        return ConvertTo-HvWmiResult -Result $result -Data $data
    }

    'wmi_job' = {
        param([string]$InstanceId)
        $job = Get-CimInstance -Namespace $Namespace -ClassName Msvm_ConcreteJob -Filter ("InstanceID='{0}'" -f ($InstanceId -replace "'", ''))
        return [ordered]@{
            JobState         = [int]$job.JobState
            ErrorCode        = [int]$job.ErrorCode
            ErrorDescription = [string]$job.ErrorDescription
        }
    }

    'vm_type_text' = {
        # The text travels base64-encoded: PowerShell 6+ would turn a date-like string into a DateTime.
        param([guid]$Id, [string]$TextBase64)
        $text = [System.Text.Encoding]::ASCII.GetString([Convert]::FromBase64String($TextBase64))
        $keyboard = Get-HvDevice -Id $Id -ClassName Msvm_Keyboard
        return ConvertTo-HvWmiResult -Result (Invoke-CimMethod -InputObject $keyboard -MethodName TypeText -Arguments @{ asciiText = $text })
    }

    'vm_type_key' = {
        param([guid]$Id, [int]$KeyCode)
        $keyboard = Get-HvDevice -Id $Id -ClassName Msvm_Keyboard
        return ConvertTo-HvWmiResult -Result (Invoke-CimMethod -InputObject $keyboard -MethodName TypeKey -Arguments @{ keyCode = [uint32]$KeyCode })
    }

    'vm_ctrl_alt_del' = {
        param([guid]$Id)
        $keyboard = Get-HvDevice -Id $Id -ClassName Msvm_Keyboard
        return ConvertTo-HvWmiResult -Result (Invoke-CimMethod -InputObject $keyboard -MethodName TypeCtrlAltDel)
    }

    'vm_mouse_move' = {
        param([guid]$Id, [int]$X, [int]$Y)
        $mouse = Get-HvDevice -Id $Id -ClassName Msvm_SyntheticMouse
        return ConvertTo-HvWmiResult -Result (Invoke-CimMethod -InputObject $mouse -MethodName SetAbsolutePosition -Arguments @{
            horizontalPosition = $X; verticalPosition = $Y
        })
    }

    'vm_mouse_click' = {
        param([guid]$Id, [int]$Button)
        $mouse = Get-HvDevice -Id $Id -ClassName Msvm_SyntheticMouse
        return ConvertTo-HvWmiResult -Result (Invoke-CimMethod -InputObject $mouse -MethodName ClickButton -Arguments @{ buttonIndex = $Button })
    }
}

# -- the loop ----------------------------------------------------------------------------------

function Write-Frame {
    param([string]$Id, $Message)
    $json = ConvertTo-Json -InputObject $Message -Depth 6 -Compress
    $Stdout.WriteLine('HVKUBE-RES ' + $Id + ' ' + $json)
}

function Get-ErrorPayload {
    param($Record)
    $exception = $Record.Exception
    $hresults = @()
    $inner = $exception
    while ($null -ne $inner) {
        $hresults += ('0x{0:X8}' -f $inner.HResult)
        $inner = $inner.InnerException
    }
    $payload = [ordered]@{
        message  = [string]$exception.Message
        fqid     = [string]$Record.FullyQualifiedErrorId
        category = "$($Record.CategoryInfo.Category)"
        type     = $exception.GetType().FullName
        hresults = $hresults
        target   = [string]$Record.TargetObject
    }
    if ($null -ne $script:OpVM) {
        $payload['vmState'] = "$($script:OpVM.State)"
    }
    return $payload
}

$identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$principal = New-Object Security.Principal.WindowsPrincipal $identity
$ready = [ordered]@{
    protocol    = 2
    elevated    = $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    hyperVAdmin = $principal.IsInRole((New-Object Security.Principal.SecurityIdentifier 'S-1-5-32-578'))
    osVersion   = [Environment]::OSVersion.Version.ToString()
    ps          = $PSVersionTable.PSVersion.ToString()
    edition     = [string]$PSVersionTable['PSEdition']
    moduleError = $ModuleError
    ops         = @($Ops.Keys | Sort-Object)
}
$Stdout.WriteLine('HVKUBE-READY ' + (ConvertTo-Json -InputObject $ready -Depth 3 -Compress))

while ($true) {
    $line = [Console]::In.ReadLine()
    if ($null -eq $line) { break }
    if (-not $line.StartsWith('HVKUBE-REQ ')) { continue }
    $id = 'unknown'
    $script:OpVM = $null
    try {
        $request = ConvertFrom-Json -InputObject $line.Substring(11)
        $id = [string]$request.id
        if ($id -notmatch '^[0-9a-f]{1,64}$') { $id = 'unknown'; throw 'request id is not a hex nonce' }
        $op = [string]$request.op
        if (-not $Ops.ContainsKey($op)) {
            Stop-Hv -Id 'HvkubeUnknownOperation' -Category InvalidArgument -Target $op `
                -Message ("'{0}' is not an operation of this dispatcher" -f $op)
        }
        $params = @{}
        # Read by name: under strict mode a request without "data" would throw on $request.data.
        $data = $request.PSObject.Properties['data']
        if ($null -ne $data -and $null -ne $data.Value) {
            foreach ($property in $data.Value.PSObject.Properties) { $params[$property.Name] = $property.Value }
        }
        $result = & $Ops[$op] @params
        Write-Frame -Id $id -Message ([ordered]@{ ok = $true; result = $result })
    } catch {
        Write-Frame -Id $id -Message ([ordered]@{ ok = $false; error = (Get-ErrorPayload -Record $_) })
    }
}
